//! Where a message to an agent goes, and whether the agent takes it: the decisions the
//! runtime's messaging and the simulator's agents share, so both deliver alike.
//!
//! A message by name goes to this node's agent of that name when there is one (no directory,
//! no network), else to the agent the directory resolves the name to. An agent takes messages
//! while it runs or waits to restart (they queue for its next instance); a stopped or failed
//! one refuses them with [`DeliveryError::DeadAgent`].

use super::directory::{AgentDirectory, AgentEntry};
use super::record::AgentState;
use super::wire::DeliveryError;

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// This node's agent of that name.
    Local,
    /// The agent of this directory entry, on another node.
    Remote(&'a AgentEntry),
}

/// Whether an agent called `name` in `state` takes a message now.
pub fn accepting(name: &str, state: AgentState) -> Result<(), DeliveryError> {
    if state.accepts_messages() {
        Ok(())
    } else {
        Err(DeliveryError::DeadAgent {
            name: name.to_owned(),
            state,
        })
    }
}

/// At the node a message reached: whether its agent `name`, in state `local` (`None`: no
/// such agent here), takes it.
pub fn admit(name: &str, local: Option<AgentState>) -> Result<(), DeliveryError> {
    match local {
        Some(state) => accepting(name, state),
        None => Err(DeliveryError::UnknownAgent(name.to_owned())),
    }
}

/// Where a message to `name` goes, given the state of this node's agent of that name (`None`:
/// there is none) and the directory.
pub fn resolve<'a>(
    name: &str,
    local: Option<AgentState>,
    directory: &'a AgentDirectory,
) -> Result<Target<'a>, DeliveryError> {
    if let Some(state) = local {
        return accepting(name, state).map(|()| Target::Local);
    }
    let entry = directory
        .get(name)
        .ok_or_else(|| DeliveryError::UnknownAgent(name.to_owned()))?;
    target_of(entry, None)
}

/// Where a message to the agent of directory entry `entry` goes, given the state of this
/// node's agent of that name (`None`: there is none).
pub fn target_of<'a>(
    entry: &'a AgentEntry,
    local: Option<AgentState>,
) -> Result<Target<'a>, DeliveryError> {
    if entry.local {
        return admit(&entry.name, local).map(|()| Target::Local);
    }
    accepting(&entry.name, entry.record.state)?;
    Ok(Target::Remote(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::record::AgentRecord;
    use crate::{NodeAddr, NodeId};

    fn directory(me: u128, entries: &[(u128, &str, AgentState)]) -> AgentDirectory {
        let records: Vec<(NodeAddr, &str, Vec<u8>)> = entries
            .iter()
            .map(|&(node, name, state)| {
                let addr = NodeAddr {
                    id: NodeId::from_u128(node),
                    addr: ([127, 0, 0, 1], 7000 + node as u16).into(),
                };
                let record = AgentRecord {
                    state,
                    ..AgentRecord::default()
                };
                (addr, name, record.encode())
            })
            .collect();
        AgentDirectory::from_entries(
            NodeId::from_u128(me),
            records.iter().map(|(a, n, b)| (*a, 1, *n, b.as_slice())),
        )
    }

    #[test]
    fn a_local_agent_is_reached_without_the_directory() {
        let dir = directory(1, &[(2, "worker", AgentState::Running)]);
        assert_eq!(
            resolve("worker", Some(AgentState::Restarting), &dir),
            Ok(Target::Local)
        );
        assert_eq!(
            resolve("worker", Some(AgentState::Failed), &dir),
            Err(DeliveryError::DeadAgent {
                name: "worker".into(),
                state: AgentState::Failed
            })
        );
    }

    #[test]
    fn a_remote_agent_is_reached_by_the_directory_unless_it_is_dead() {
        let dir = directory(
            1,
            &[
                (2, "worker", AgentState::Running),
                (3, "gone", AgentState::Stopped),
            ],
        );
        match resolve("worker", None, &dir) {
            Ok(Target::Remote(entry)) => assert_eq!(entry.node.id, NodeId::from_u128(2)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            resolve("gone", None, &dir),
            Err(DeliveryError::DeadAgent { .. })
        ));
        assert_eq!(
            resolve("nobody", None, &dir),
            Err(DeliveryError::UnknownAgent("nobody".into()))
        );
    }

    #[test]
    fn the_receiver_refuses_unknown_and_dead_agents() {
        assert_eq!(admit("a", Some(AgentState::Running)), Ok(()));
        assert_eq!(admit("a", Some(AgentState::Restarting)), Ok(()));
        assert_eq!(
            admit("a", None),
            Err(DeliveryError::UnknownAgent("a".into()))
        );
        assert!(admit("a", Some(AgentState::Stopped)).is_err());
    }
}
