//! The agent directory: every visible agent of the cluster, indexed by name, capability and
//! node, built from a core's replicated `agents` keyspace and membership. Reads are local; the
//! runtime rebuilds it with the services directory whenever an ephemeral keyspace or
//! membership changes, so a dead node's agents drop out the moment membership says so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod chunks;

use chunks::Chunks;

use super::record::AgentRecord;
use crate::ephemeral::{self, Owner, AGENTS_KEYSPACE};
use crate::membership::Membership;
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
///
/// Entries are shared (`Arc`) and kept in chunks that copies share (`directory/chunks.rs`), so bringing a
/// published directory up to date after one agent changed copies one chunk of pointers per
/// index it is in, not every entry: spawning thousands of agents one after another would
/// otherwise cost a whole copy, or a whole rebuild, per spawn.
#[derive(Clone, Debug, Default)]
pub struct AgentDirectory {
    /// In name order, then this node first, then node id order: the first of a name is the
    /// one a message by name goes to. One entry per name and node: only a node's visible
    /// life shows.
    entries: Chunks,
    /// The entries of each capability, in the same order; no capability without entries.
    by_capability: BTreeMap<String, Chunks>,
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
        let entries =
            shown.filter_map(|(owner, name, value)| raw_entry(membership, owner, name, value));
        Self::from_entries(membership.me().node, entries)
    }

    /// The directory of `entries` as node `me` sees them; entries whose name or bytes are not
    /// valid are left out (they were not written by a Foundation node).
    pub fn from_entries<'a>(me: NodeId, entries: impl IntoIterator<Item = RawEntry<'a>>) -> Self {
        let mut entries: Vec<Arc<AgentEntry>> = entries
            .into_iter()
            .filter_map(|raw| entry_of(me, raw))
            .map(Arc::new)
            .collect();
        entries.sort_by(|a, b| order(a).cmp(&order(b)));
        let mut directory = Self {
            entries: Chunks::from_sorted(entries),
            by_capability: BTreeMap::new(),
        };
        directory.index_capabilities();
        directory
    }

    /// Brings the directory up to date after some entries changed: drops every entry of
    /// `nodes` and the entries `named` (name and node), and takes `fresh`, the raw entries that
    /// now stand where they stood (those still visible). The result is what
    /// [`from_entries`](Self::from_entries) would give for the entries kept plus `fresh`.
    pub fn refresh<'a>(
        &mut self,
        me: NodeId,
        nodes: &BTreeSet<NodeId>,
        named: &BTreeSet<(NodeId, &str)>,
        fresh: impl IntoIterator<Item = RawEntry<'a>>,
    ) {
        if !nodes.is_empty() {
            self.entries.retain(|entry| !nodes.contains(&entry.node.id));
            self.index_capabilities();
        }
        for &(node, name) in named {
            if let Some(gone) = self.entries.remove((name, node != me, node)) {
                self.unindex(&gone);
            }
        }
        for entry in fresh.into_iter().filter_map(|raw| entry_of(me, raw)) {
            let entry = Arc::new(entry);
            if let Some(old) = self.entries.upsert(entry.clone()) {
                self.unindex(&old);
            }
            for capability in &entry.record.capabilities {
                let of = self.by_capability.entry(capability.clone()).or_default();
                of.upsert(entry.clone());
            }
        }
    }

    /// Takes `entry`, just removed from the entries, out of its capabilities' lists.
    fn unindex(&mut self, entry: &AgentEntry) {
        for capability in &entry.record.capabilities {
            let Some(of) = self.by_capability.get_mut(capability) else {
                continue;
            };
            of.remove(order(entry));
            if of.is_empty() {
                self.by_capability.remove(capability);
            }
        }
    }

    fn index_capabilities(&mut self) {
        let mut by_capability: BTreeMap<&str, Vec<Arc<AgentEntry>>> = BTreeMap::new();
        for entry in self.entries.iter() {
            for capability in &entry.record.capabilities {
                by_capability
                    .entry(capability)
                    .or_default()
                    .push(entry.clone());
            }
        }
        self.by_capability = by_capability
            .into_iter()
            .map(|(capability, of)| (capability.to_owned(), Chunks::from_sorted(of)))
            .collect();
    }

    /// The agent a message to `name` goes to: this node's if it has one, else the one on the
    /// node with the smallest id (names are unique per node, not cluster-wide).
    pub fn get(&self, name: &str) -> Option<&AgentEntry> {
        let first = self.entries.starting_at_name(name).next()?;
        (first.name == name).then_some(&**first)
    }

    /// Every agent called `name`, in the order of [`get`](Self::get)'s preference.
    pub fn named(&self, name: &str) -> impl Iterator<Item = &AgentEntry> {
        // Counted first, so the iterator does not hold on to `name`.
        let count = self
            .entries
            .starting_at_name(name)
            .take_while(|e| e.name == name)
            .count();
        self.entries
            .starting_at_name(name)
            .take(count)
            .map(|e| &**e)
    }

    /// Agents that declared `capability`, in name order.
    pub fn with_capability(&self, capability: &str) -> Vec<&AgentEntry> {
        let of = self.by_capability.get(capability).into_iter();
        of.flat_map(Chunks::iter).map(|e| &**e).collect()
    }

    /// Agents running in `node`, in name order.
    pub fn on_node(&self, node: NodeId) -> Vec<&AgentEntry> {
        self.all().filter(|e| e.node.id == node).collect()
    }

    /// Every visible agent, in name order.
    pub fn all(&self) -> impl ExactSizeIterator<Item = &AgentEntry> {
        self.entries.iter().map(|e| &**e)
    }

    /// Every capability some visible agent declared, in order.
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.by_capability.keys().map(String::as_str)
    }
}

/// Where an entry sorts: by name, this node's first, then by node id.
fn order(entry: &AgentEntry) -> (&str, bool, NodeId) {
    (&entry.name, !entry.local, entry.node.id)
}

/// The raw entry `owner` wrote as `name`, if membership knows where `owner` listens.
pub fn raw_entry<'a>(
    membership: &Membership,
    owner: Owner,
    name: &'a str,
    value: &'a [u8],
) -> Option<RawEntry<'a>> {
    let addr = addr_of(owner, membership)?;
    let node = NodeAddr {
        id: owner.node,
        addr,
    };
    Some((node, owner.generation, name, value))
}

/// The entry a raw one stands for, if its name and bytes are valid.
fn entry_of(me: NodeId, (node, generation, name, value): RawEntry<'_>) -> Option<AgentEntry> {
    super::record::check_agent_name(name).ok()?;
    Some(AgentEntry {
        name: name.to_owned(),
        node,
        generation,
        record: AgentRecord::decode(value)?,
        local: node.id == me,
    })
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
        assert_eq!(remote.named("worker").count(), 3);
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
        let names: Vec<&str> = dir.all().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(dir.get("good").unwrap().record.state, AgentState::Failed);
    }

    /// What a step does to the raw entries: write or delete one, or replace a node's whole set
    /// (a membership change: the node's visible life is read again).
    #[derive(Clone, Debug)]
    enum Step {
        Write(u128, usize, Vec<usize>),
        Delete(u128, usize),
        Node(u128, Vec<(usize, Vec<usize>)>),
    }

    const NAMES: [&str; 5] = ["a", "b", "bad/name", "c", "d"];
    const CAPABILITIES: [&str; 3] = ["x", "y", "z"];

    fn bytes_of(capabilities: &[usize]) -> Vec<u8> {
        let names: Vec<&str> = capabilities.iter().map(|&c| CAPABILITIES[c]).collect();
        match capabilities.first() {
            // Now and then bytes no Foundation node wrote.
            Some(2) if capabilities.len() == 3 => vec![0xff; 3],
            _ => record(&names, AgentState::Running),
        }
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let capabilities = proptest::collection::vec(0..3usize, 0..4);
        prop_oneof![
            (1..5u128, 0..5usize, capabilities.clone()).prop_map(|(n, k, c)| Step::Write(n, k, c)),
            (1..5u128, 0..5usize).prop_map(|(n, k)| Step::Delete(n, k)),
            (
                1..5u128,
                proptest::collection::vec((0..5usize, capabilities), 0..4)
            )
                .prop_map(|(n, e)| Step::Node(n, e)),
        ]
    }

    proptest::proptest! {
        /// Refreshing what changed gives, after every step, the directory built from scratch.
        #[test]
        fn a_refreshed_directory_is_the_one_built_from_scratch(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            let me = NodeId::from_u128(1);
            let mut held: BTreeMap<(u128, usize), Vec<u8>> = BTreeMap::new();
            let mut kept = AgentDirectory::default();
            for step in steps {
                let touched: Vec<(u128, Option<usize>)> = match &step {
                    Step::Write(n, k, c) => {
                        held.insert((*n, *k), bytes_of(c));
                        vec![(*n, Some(*k))]
                    }
                    Step::Delete(n, k) => {
                        held.remove(&(*n, *k));
                        vec![(*n, Some(*k))]
                    }
                    Step::Node(n, entries) => {
                        held.retain(|(node, _), _| node != n);
                        for (k, c) in entries {
                            held.insert((*n, *k), bytes_of(c));
                        }
                        vec![(*n, None)]
                    }
                };
                let nodes: BTreeSet<NodeId> = touched
                    .iter()
                    .filter(|(_, k)| k.is_none())
                    .map(|(n, _)| NodeId::from_u128(*n))
                    .collect();
                let named: BTreeSet<(NodeId, &str)> = touched
                    .iter()
                    .filter_map(|(n, k)| Some((NodeId::from_u128(*n), NAMES[(*k)?])))
                    .collect();
                let fresh = held.iter().filter(|((n, k), _)| {
                    touched.iter().any(|(tn, tk)| tn == n && tk.is_none_or(|tk| tk == *k))
                });
                kept.refresh(me, &nodes, &named, fresh.map(|((n, k), b)| (node(*n), 1, NAMES[*k], b.as_slice())));
                let built = AgentDirectory::from_entries(
                    me,
                    held.iter().map(|((n, k), b)| (node(*n), 1, NAMES[*k], b.as_slice())),
                );
                proptest::prop_assert!(kept.all().eq(built.all()), "{step:?}");
                proptest::prop_assert!(kept.capabilities().eq(built.capabilities()));
                for capability in built.capabilities() {
                    let (of_kept, of_built) = (&kept.by_capability[capability], &built.by_capability[capability]);
                    proptest::prop_assert!(of_kept.iter().eq(of_built.iter()), "{capability}");
                    proptest::prop_assert_eq!(of_kept.check(), Ok(()));
                }
                proptest::prop_assert_eq!(kept.entries.check(), Ok(()));
            }
        }
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
        assert_eq!(AgentDirectory::build(&core).all().len(), 0);
    }
}
