//! The agent directory: every visible agent of the cluster, indexed by name, capability and
//! node, built from a core's replicated `agents` keyspace and membership. Reads are local; the
//! runtime rebuilds it with the services directory whenever an ephemeral keyspace or
//! membership changes, so a dead node's agents drop out the moment membership says so.

use std::collections::BTreeMap;

use super::record::AgentRecord;
use crate::ephemeral::{self, Owner, AGENTS_KEYSPACE};
use crate::node::Core;
use crate::services::directory::{addr_of, visible_entries};
use crate::{NodeAddr, NodeId};

/// A visible agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEntry {
    /// Its name, unique in its node.
    pub name: String,
    /// The node it runs in.
    pub node: NodeAddr,
    /// That node's membership generation when it wrote the entry.
    pub generation: u64,
    /// Its capabilities and state.
    pub record: AgentRecord,
    /// Whether it runs in this node.
    pub local: bool,
}

/// Every entry of the `agents` keyspace, dead lives' too (only the fault switch that plants
/// that bug reads them).
fn every_entry(core: &Core) -> impl Iterator<Item = (Owner, &str, &[u8])> {
    core.replication()
        .keyspace(AGENTS_KEYSPACE)
        .into_iter()
        .flat_map(|space| space.iter())
        .filter_map(|(key, value)| {
            let (owner, name) = ephemeral::parse(key)?;
            Some((owner, name, value))
        })
}

/// One raw directory entry: the owner's address and generation, the name, the replicated bytes.
pub type RawEntry<'a> = (NodeAddr, u64, &'a str, &'a [u8]);

/// Every visible agent, as one node sees it.
#[derive(Clone, Debug, Default)]
pub struct AgentDirectory {
    /// In name order, then this node first, then node id order: the first of a name is the
    /// one a message by name goes to.
    entries: Vec<AgentEntry>,
    /// Positions in `entries` by capability.
    by_capability: BTreeMap<String, Vec<usize>>,
}

impl AgentDirectory {
    /// The directory as `core` sees it now.
    pub fn build(core: &Core) -> Self {
        let membership = core.membership();
        let shown: Box<dyn Iterator<Item = (Owner, &str, &[u8])>> =
            if fault_on!(AgentDirectoryShowsDeadLives) {
                Box::new(every_entry(core))
            } else {
                Box::new(visible_entries(core, AGENTS_KEYSPACE))
            };
        let entries = shown.filter_map(|(owner, name, value)| {
            let addr = addr_of(owner, membership)?;
            let node = NodeAddr {
                id: owner.node,
                addr,
            };
            Some((node, owner.generation, name, value))
        });
        Self::from_entries(membership.me().node, entries)
    }

    /// The directory of `entries` as node `me` sees them; entries whose name or bytes are not
    /// valid are left out (they were not written by a Foundation node).
    pub fn from_entries<'a>(me: NodeId, entries: impl IntoIterator<Item = RawEntry<'a>>) -> Self {
        let mut entries: Vec<AgentEntry> = entries
            .into_iter()
            .filter_map(|(node, generation, name, value)| {
                super::record::check_agent_name(name).ok()?;
                Some(AgentEntry {
                    name: name.to_owned(),
                    node,
                    generation,
                    record: AgentRecord::decode(value)?,
                    local: node.id == me,
                })
            })
            .collect();
        entries.sort_by(|a, b| (&a.name, !a.local, a.node.id).cmp(&(&b.name, !b.local, b.node.id)));
        let mut by_capability: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            for capability in &entry.record.capabilities {
                by_capability.entry(capability.clone()).or_default().push(i);
            }
        }
        Self {
            entries,
            by_capability,
        }
    }

    /// The agent a message to `name` goes to: this node's if it has one, else the one on the
    /// node with the smallest id (names are unique per node, not cluster-wide).
    pub fn get(&self, name: &str) -> Option<&AgentEntry> {
        self.named(name).first()
    }

    /// Every agent called `name`, in the order of [`get`](Self::get)'s preference.
    pub fn named(&self, name: &str) -> &[AgentEntry] {
        let start = self.entries.partition_point(|e| e.name.as_str() < name);
        let end = start + self.entries[start..].partition_point(|e| e.name == name);
        &self.entries[start..end]
    }

    /// Agents that declared `capability`, in name order.
    pub fn with_capability(&self, capability: &str) -> Vec<&AgentEntry> {
        self.by_capability
            .get(capability)
            .into_iter()
            .flatten()
            .map(|&i| &self.entries[i])
            .collect()
    }

    /// Agents running in `node`, in name order.
    pub fn on_node(&self, node: NodeId) -> Vec<&AgentEntry> {
        self.entries.iter().filter(|e| e.node.id == node).collect()
    }

    /// Every visible agent, in name order.
    pub fn all(&self) -> &[AgentEntry] {
        &self.entries
    }

    /// Every capability some visible agent declared, in order.
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.by_capability.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::AgentState;
    use super::*;

    fn node(id: u128) -> NodeAddr {
        NodeAddr {
            id: NodeId::from_u128(id),
            addr: ([127, 0, 0, 1], 7000 + id as u16).into(),
        }
    }

    fn record(capabilities: &[&str], state: AgentState) -> Vec<u8> {
        AgentRecord {
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            state,
            ..AgentRecord::default()
        }
        .encode()
    }

    fn directory(me: u128, entries: &[(u128, &str, Vec<u8>)]) -> AgentDirectory {
        AgentDirectory::from_entries(
            NodeId::from_u128(me),
            entries
                .iter()
                .map(|(n, name, bytes)| (node(*n), 1, *name, bytes.as_slice())),
        )
    }

    #[test]
    fn lookups_by_name_capability_and_node() {
        let dir = directory(
            1,
            &[
                (2, "bidder-b", record(&["bidder"], AgentState::Running)),
                (
                    1,
                    "bidder-a",
                    record(&["bidder", "gpu"], AgentState::Running),
                ),
                (2, "planner", record(&["plan"], AgentState::Restarting)),
            ],
        );
        let a = dir.get("bidder-a").unwrap();
        assert!(a.local);
        assert_eq!(a.node, node(1));
        assert!(dir.get("nobody").is_none());
        let bidders: Vec<&str> = dir
            .with_capability("bidder")
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(bidders, ["bidder-a", "bidder-b"]);
        assert_eq!(dir.with_capability("gpu").len(), 1);
        assert!(dir.with_capability("none").is_empty());
        let on_two: Vec<&str> = dir
            .on_node(NodeId::from_u128(2))
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(on_two, ["bidder-b", "planner"]);
        assert_eq!(
            dir.capabilities().collect::<Vec<_>>(),
            ["bidder", "gpu", "plan"]
        );
    }

    #[test]
    fn a_name_on_several_nodes_resolves_to_the_local_one_then_the_smallest_node() {
        let entries = [
            (3, "worker", record(&[], AgentState::Running)),
            (2, "worker", record(&[], AgentState::Running)),
            (5, "worker", record(&[], AgentState::Running)),
        ];
        let remote = directory(9, &entries);
        assert_eq!(remote.get("worker").unwrap().node, node(2));
        assert_eq!(remote.named("worker").len(), 3);
        let local = directory(5, &entries);
        assert_eq!(local.get("worker").unwrap().node, node(5));
        assert!(local.get("worker").unwrap().local);
    }

    #[test]
    fn invalid_names_and_records_are_left_out() {
        let dir = directory(
            1,
            &[
                (2, "bad/name", record(&[], AgentState::Running)),
                (2, "garbage", vec![0xff, 0xff, 0xff]),
                (2, "good", record(&["x"], AgentState::Failed)),
            ],
        );
        let names: Vec<&str> = dir.all().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(dir.get("good").unwrap().record.state, AgentState::Failed);
    }

    #[test]
    fn the_core_publishes_its_own_agents_through_the_ephemeral_keyspace() {
        use crate::membership::{MemberId, MembershipConfig, NodeMetadata};
        use crate::node::CoreConfig;
        use crate::replication::ReplicationConfig;
        use crate::time::Instant;

        let me = node(1);
        let config = CoreConfig {
            me: MemberId {
                node: me.id,
                addr: me.addr,
                generation: 1,
            },
            membership: MembershipConfig::development(),
            metadata: NodeMetadata::default(),
            seed: 7,
        };
        let mut core =
            Core::new(config, Instant::ZERO).with_replication(ReplicationConfig::default(), 7);
        let bytes = record(&["bidder"], AgentState::Running);
        core.set_ephemeral(Instant::ZERO, AGENTS_KEYSPACE, "bidder", Some(bytes))
            .unwrap();
        let built = crate::services::Directory::build(&core);
        let entry = built.agents().get("bidder").unwrap();
        assert!(entry.local);
        assert_eq!(entry.node, me);
        assert_eq!(built.agents().with_capability("bidder").len(), 1);
        core.set_ephemeral(Instant::ZERO, AGENTS_KEYSPACE, "bidder", None)
            .unwrap();
        assert!(AgentDirectory::build(&core).all().is_empty());
    }
}
