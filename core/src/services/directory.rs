//! The directory: every visible service instance and every node's pub/sub interest, derived
//! from a core's replicated state and membership. Reads are local. Whoever keeps one (the
//! runtime's driver, the simulator) collects the core's events into [`DirectoryChanges`] and
//! brings it up to date with [`Directory::update`], which touches only the entries and nodes
//! that changed (see the `update` module).

mod update;

pub use update::DirectoryChanges;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::{NodeAddr, NodeId};
use serde::{Deserialize, Serialize};

use super::balance::{StableHash, StableHasher};
use super::record::InstanceRecord;
use super::topic::{Subscriptions, Topic};
use crate::agents::AgentDirectory;
use crate::ephemeral::{self, Owner};
use crate::membership::{MemberId, Membership};
use crate::node::Core;

/// One instance, cluster-wide: the node life that registered it and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId {
    /// The owning node.
    pub node: NodeId,
    /// The owner's membership generation when it wrote the entry.
    pub generation: u64,
    /// The owner's number for the instance.
    pub local: u64,
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}/{}",
            self.node.short(),
            self.generation,
            self.local
        )
    }
}

impl StableHash for InstanceId {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        (self.node.as_u128(), self.generation).stable_hash(hasher);
        self.local.stable_hash(hasher);
    }
}

/// A visible instance of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The service.
    pub service: String,
    /// Which instance.
    pub id: InstanceId,
    /// Where its node listens.
    pub addr: SocketAddr,
    /// What it registered.
    pub record: InstanceRecord,
    /// Whether it runs in this node.
    pub local: bool,
}

impl Instance {
    /// Its node's transport address.
    pub fn node(&self) -> NodeAddr {
        NodeAddr {
            id: self.id.node,
            addr: self.addr,
        }
    }
}

/// One node's subscription pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interest {
    /// The subscribing node.
    pub node: NodeAddr,
    /// Its pattern, as subscribed.
    pub pattern: String,
    /// Every subscriber of the node on the pattern is a federation gateway's subscription to a
    /// pattern it exports: it sends messages out of the cluster and delivers none here, so
    /// the interest a gateway sends back to linked clusters leaves it out.
    pub bridge: bool,
}

/// The value of a pub/sub interest entry whose subscribers are all a gateway's bridge (see
/// [`Interest::bridge`]); any other value, the empty one of older releases included, is a
/// subscription that delivers here.
pub const BRIDGE_INTEREST: &[u8] = b"bridge";

/// Everything the registry and pub/sub route by, as one node sees it.
///
/// A driver publishes a copy after every change, so each part is shared with the copies
/// and copied only when an update changes it (`Arc::make_mut`): an agent spawned, or an
/// instance registered, copied every pattern subscribed in the cluster and every member.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// The node life it was last brought up to date for.
    me: Option<MemberId>,
    /// Each service's instances, in instance id order.
    services: Arc<BTreeMap<String, Arc<[Instance]>>>,
    /// Every node's subscription patterns.
    interest: Arc<PubSubInterest>,
    /// Live members and this node, by id.
    members: Arc<BTreeMap<NodeId, NodeAddr>>,
    /// The agents, built from the same replicated state and membership at the same moment.
    agents: Arc<AgentDirectory>,
}

/// Every node's subscription patterns, listed and indexed for matching.
#[derive(Clone, Debug, Default)]
struct PubSubInterest {
    /// In node then pattern order.
    list: Vec<Interest>,
    /// Which nodes have a subscriber for which patterns (those of `list` that parse).
    subscribers: Subscriptions<NodeAddr>,
}

impl Directory {
    /// A directory that lists only `instances` (for routing tests and tools).
    pub fn of_instances(instances: impl IntoIterator<Item = Instance>) -> Self {
        let mut services: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for instance in instances {
            services
                .entry(instance.service.clone())
                .or_default()
                .push(instance);
        }
        Self {
            services: Arc::new(
                services
                    .into_iter()
                    .map(|(name, list)| (name, list.into()))
                    .collect(),
            ),
            ..Self::default()
        }
    }

    /// The directory as `core` sees it now, built from scratch.
    pub fn build(core: &Core) -> Self {
        let mut directory = Self::default();
        directory.update(core, &DirectoryChanges::everything());
        directory
    }

    /// Every visible agent, by name, capability and node.
    pub fn agents(&self) -> &Arc<AgentDirectory> {
        &self.agents
    }

    /// Nodes with a subscriber whose pattern matches `topic`, each once, in id order.
    pub fn subscribers(&self, topic: &Topic) -> impl Iterator<Item = NodeAddr> + '_ {
        let nodes: std::collections::BTreeSet<NodeAddr> =
            self.interest.subscribers.matching(topic).copied().collect();
        nodes.into_iter()
    }

    /// The address of `node` if it is this node or a live member.
    pub fn node_addr(&self, node: NodeId) -> Option<NodeAddr> {
        self.members.get(&node).copied()
    }

    /// The instances of `service`, healthy or not, in instance id order.
    pub fn instances(&self, service: &str) -> Arc<[Instance]> {
        self.services
            .get(service)
            .cloned()
            .unwrap_or_else(|| Arc::from([]))
    }

    /// Names of the services with at least one visible instance.
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Every visible instance, by service then id.
    pub fn all(&self) -> impl Iterator<Item = &Instance> {
        self.services.values().flat_map(|v| v.iter())
    }

    /// Instances that declared `capability`.
    pub fn with_capability(&self, capability: &str) -> Vec<Instance> {
        self.filtered(|i| i.record.capabilities.contains(capability))
    }

    /// Instances tagged `key=value`.
    pub fn with_tag(&self, key: &str, value: &str) -> Vec<Instance> {
        self.filtered(|i| i.record.tags.get(key).is_some_and(|v| v == value))
    }

    /// Instances running on `node`.
    pub fn on_node(&self, node: NodeId) -> Vec<Instance> {
        self.filtered(|i| i.id.node == node)
    }

    /// Every node's subscription patterns, in node then pattern order.
    pub fn interest(&self) -> &[Interest] {
        &self.interest.list
    }

    fn filtered(&self, keep: impl Fn(&Instance) -> bool) -> Vec<Instance> {
        self.all().filter(|i| keep(i)).cloned().collect()
    }
}

/// Live entries of an ephemeral keyspace whose owner is visible, as `(owner, name, value)`.
pub(crate) fn visible_entries<'a>(
    core: &'a Core,
    keyspace: &str,
) -> impl Iterator<Item = (Owner, &'a str, &'a [u8])> {
    let membership = core.membership();
    core.replication()
        .keyspace(keyspace)
        .into_iter()
        .flat_map(|space| space.iter())
        .filter_map(move |(key, value)| {
            let (owner, name) = ephemeral::parse(key)?;
            ephemeral::visible(owner, membership).then_some((owner, name, value))
        })
}

/// Where `owner`'s node listens, if membership knows it.
pub(crate) fn addr_of(owner: Owner, membership: &Membership) -> Option<SocketAddr> {
    let me = membership.me();
    if owner.node == me.node {
        return Some(me.addr);
    }
    membership.member(owner.node).map(|m| m.addr)
}
