//! What the agent directory stores about one agent, and the names and capabilities it accepts.
//!
//! An agent's replicated entry is keyed by its owner node life and its name (see
//! [`crate::ephemeral::key`]); the value is an [`AgentRecord`]: what the agent can do and
//! where it is in its lifecycle.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ephemeral::plain_name;

/// Longest agent name.
pub const AGENT_NAME_MAX: usize = 128;
/// Longest capability.
pub const CAPABILITY_MAX: usize = 64;
/// Most capabilities one agent declares: the record is replicated to every node.
pub const CAPABILITIES_MAX: usize = 32;

/// Where an agent is in its lifecycle, as the directory shows it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Running: takes messages.
    #[default]
    Running,
    /// Exited abnormally and waiting to be started again; messages queue meanwhile.
    Restarting,
    /// Ended without being restarted (its restart policy said so).
    Stopped,
    /// Its supervisor gave up after too many restarts: it will not run again.
    Failed,
}

impl AgentState {
    /// Every state, for metrics that report each.
    pub const ALL: [AgentState; 4] = [
        AgentState::Running,
        AgentState::Restarting,
        AgentState::Stopped,
        AgentState::Failed,
    ];

    /// Whether messages to the agent can still be delivered (now, or after its restart).
    pub fn accepts_messages(self) -> bool {
        matches!(self, AgentState::Running | AgentState::Restarting)
    }

    /// The lowercase name used in metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            AgentState::Running => "running",
            AgentState::Restarting => "restarting",
            AgentState::Stopped => "stopped",
            AgentState::Failed => "failed",
        }
    }
}

/// Longest reason a health report carries in the directory; longer ones are cut.
pub const HEALTH_REASON_MAX: usize = 200;

/// An agent's own account of how it is doing, as it last reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// Working.
    #[default]
    Healthy,
    /// Working, with a problem worth knowing.
    Degraded(String),
    /// Not able to do its work.
    Unhealthy(String),
}

impl Health {
    /// The lowercase name of its kind: `healthy`, `degraded`, `unhealthy`.
    pub const fn name(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded(_) => "degraded",
            Health::Unhealthy(_) => "unhealthy",
        }
    }

    /// Why it is not healthy, if it is not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Healthy => None,
            Health::Degraded(r) | Health::Unhealthy(r) => Some(r),
        }
    }

    /// The same report with its reason cut to [`HEALTH_REASON_MAX`] characters, as it is
    /// replicated to every node.
    pub fn bounded(self) -> Self {
        let cut = |r: String| {
            if r.chars().count() <= HEALTH_REASON_MAX {
                r
            } else {
                r.chars().take(HEALTH_REASON_MAX).collect()
            }
        };
        match self {
            Health::Healthy => Health::Healthy,
            Health::Degraded(r) => Health::Degraded(cut(r)),
            Health::Unhealthy(r) => Health::Unhealthy(cut(r)),
        }
    }
}

/// One agent, as replicated (its name and node are in the entry's key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// What it can do, e.g. `bidder`, `gpu`: others find it by these.
    pub capabilities: BTreeSet<String>,
    /// Where it is in its lifecycle.
    pub state: AgentState,
    /// Its latest health report (healthy until it reports otherwise).
    pub health: Health,
}

impl AgentRecord {
    /// The replicated bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data: encoding into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Reads replicated bytes; `None` if they are not a valid record (a newer or corrupt
    /// writer), so nothing invalid reaches a directory.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let record: Self = postcard::from_bytes(bytes).ok()?;
        check_capabilities(&record.capabilities).ok()?;
        if record
            .health
            .reason()
            .is_some_and(|r| r.chars().count() > HEALTH_REASON_MAX)
        {
            return None;
        }
        Some(record)
    }
}

/// Why an agent's name or capabilities were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadAgent {
    /// The name is not acceptable.
    #[error("agent name {0:?} must be 1 to {AGENT_NAME_MAX} characters of A-Z a-z 0-9 . _ -")]
    Name(String),
    /// A capability is not acceptable.
    #[error("capability {0:?} must be 1 to {CAPABILITY_MAX} characters of A-Z a-z 0-9 . _ -")]
    Capability(String),
    /// Too many capabilities.
    #[error("{0} capabilities, more than the {CAPABILITIES_MAX} allowed")]
    TooManyCapabilities(usize),
}

/// Checks an agent name: short, and free of the `/` that separates key parts.
pub fn check_agent_name(name: &str) -> Result<(), BadAgent> {
    if plain_name(name, AGENT_NAME_MAX) {
        Ok(())
    } else {
        Err(BadAgent::Name(name.to_owned()))
    }
}

/// Checks a set of capabilities: few, each a short plain name.
pub fn check_capabilities(capabilities: &BTreeSet<String>) -> Result<(), BadAgent> {
    if capabilities.len() > CAPABILITIES_MAX {
        return Err(BadAgent::TooManyCapabilities(capabilities.len()));
    }
    match capabilities.iter().find(|c| !plain_name(c, CAPABILITY_MAX)) {
        Some(bad) => Err(BadAgent::Capability(bad.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let record = AgentRecord {
            capabilities: caps(&["bidder", "gpu"]),
            state: AgentState::Restarting,
            health: Health::Degraded("queue 80% full".into()),
        };
        assert_eq!(AgentRecord::decode(&record.encode()), Some(record));
        assert_eq!(AgentRecord::decode(&[0xff, 0xff, 0xff]), None);
        assert_eq!(AgentRecord::decode(&[]), None);
    }

    #[test]
    fn a_record_with_invalid_capabilities_does_not_decode() {
        let record = AgentRecord {
            capabilities: caps(&["ok", "not/ok"]),
            state: AgentState::Running,
            health: Health::Healthy,
        };
        assert_eq!(AgentRecord::decode(&record.encode()), None);
    }

    #[test]
    fn health_reasons_are_bounded_and_an_unbounded_one_does_not_decode() {
        let long = "x".repeat(HEALTH_REASON_MAX + 10);
        let cut = Health::Unhealthy(long.clone()).bounded();
        assert_eq!(cut.reason().map(str::len), Some(HEALTH_REASON_MAX));
        assert_eq!(cut.name(), "unhealthy");
        let record = AgentRecord {
            health: Health::Degraded(long),
            ..AgentRecord::default()
        };
        assert_eq!(AgentRecord::decode(&record.encode()), None);
    }

    #[test]
    fn names_and_capabilities_are_checked() {
        assert!(check_agent_name("bidder-1.eu_2").is_ok());
        for bad in ["", "a/b", "spa ce", &"x".repeat(AGENT_NAME_MAX + 1)] {
            assert_eq!(check_agent_name(bad), Err(BadAgent::Name(bad.to_owned())));
        }
        assert!(check_capabilities(&caps(&["a", "b.c"])).is_ok());
        assert_eq!(
            check_capabilities(&caps(&[""])),
            Err(BadAgent::Capability(String::new()))
        );
        let many: BTreeSet<String> = (0..=CAPABILITIES_MAX).map(|i| format!("c{i}")).collect();
        assert_eq!(
            check_capabilities(&many),
            Err(BadAgent::TooManyCapabilities(CAPABILITIES_MAX + 1))
        );
    }

    #[test]
    fn only_running_and_restarting_agents_accept_messages() {
        let accepting: Vec<_> = AgentState::ALL
            .into_iter()
            .filter(|s| s.accepts_messages())
            .collect();
        assert_eq!(accepting, [AgentState::Running, AgentState::Restarting]);
    }
}
