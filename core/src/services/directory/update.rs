//! Keeping a [`Directory`] up to date from a core's events, touching only what changed.
//!
//! Two kinds of change move the directory:
//! - an entry of the services or pub/sub keyspace was written or deleted: that one instance
//!   or interest is read again;
//! - membership changed for a node (up, failed, left, removed, a new address or life): every
//!   entry that node owns may have appeared or vanished, so its entries are read again — a
//!   range read of the keys under its prefix, not a walk of the keyspaces.
//!
//! The agents' part ([`AgentDirectory`]) follows the same two kinds of change: an agent entry
//! written is read again, a node whose membership changed has its agents read again. It is
//! rebuilt whole only when this node joins or is isolated. [`DirectoryChanges::everything`]
//! reads every node again: that is how [`Directory::build`] starts from nothing, so the full
//! and the incremental paths are one code path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::{addr_of, Directory, Instance, InstanceId, Interest, BRIDGE_INTEREST};
use crate::agents::directory::raw_entry;
use crate::agents::AgentDirectory;
use crate::effects::Event;
use crate::ephemeral::{self, Owner, AGENTS_KEYSPACE, PUBSUB_KEYSPACE, SERVICES_KEYSPACE};
use crate::membership::{MemberState, MembershipEvent};
use crate::node::Core;
use crate::replication::ReplicationEvent;
use crate::services::record::{parse_entry_name, InstanceRecord};
use crate::services::topic::Pattern;
use crate::{NodeAddr, NodeId};

/// What changed in a core since its directory was last brought up to date. Collect the core's
/// events into it with [`note`](Self::note), then hand it to [`Directory::update`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// Read every node again (a directory built from nothing).
    all: bool,
    /// Nodes whose membership changed.
    nodes: BTreeSet<NodeId>,
    /// Service entries written, by replicated key.
    services: BTreeSet<String>,
    /// Interest entries written, by replicated key.
    interest: BTreeSet<String>,
    /// Agent entries written, by replicated key.
    agents: BTreeSet<String>,
    /// The agents' part must be rebuilt whole.
    agents_all: bool,
}

impl DirectoryChanges {
    /// Changes that make [`Directory::update`] read everything.
    pub fn everything() -> Self {
        Self {
            all: true,
            agents_all: true,
            ..Self::default()
        }
    }

    /// Notes `event` if it moves the directory; returns whether it does.
    pub fn note(&mut self, event: &Event) -> bool {
        match event {
            Event::Membership(event) => {
                match member_of(event) {
                    Some(node) => {
                        self.nodes.insert(node);
                    }
                    // `Joined` and `Isolated` are about this node: `update` notices a new life
                    // of ours by itself; the agents' part is read again whole, as it is rare.
                    None => self.agents_all = true,
                }
                true
            }
            Event::Replication(ReplicationEvent::KeyChanged { keyspace, key, .. }) => {
                match keyspace.as_str() {
                    SERVICES_KEYSPACE => self.services.insert(key.clone()),
                    PUBSUB_KEYSPACE => self.interest.insert(key.clone()),
                    AGENTS_KEYSPACE => self.agents.insert(key.clone()),
                    _ => return false,
                };
                true
            }
            _ => false,
        }
    }

    /// Whether nothing was noted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The node a membership event is about, if it is about another node.
fn member_of(event: &MembershipEvent) -> Option<NodeId> {
    match event {
        MembershipEvent::Up(view)
        | MembershipEvent::Updated(view)
        | MembershipEvent::Failed(view)
        | MembershipEvent::Left(view)
        | MembershipEvent::Removed(view) => Some(view.id),
        MembershipEvent::Joined | MembershipEvent::Isolated => None,
    }
}

impl Directory {
    /// Whether [`update`](Self::update) has anything to do: changes were noted, or this node
    /// took a new life (membership renews our identity without an event, and our entries'
    /// visibility follows our life).
    pub fn needs_update(&self, core: &Core, changes: &DirectoryChanges) -> bool {
        !changes.is_empty() || self.me != Some(core.membership().me())
    }

    /// Brings the directory up to date with `core` after `changes` (collected from `core`'s
    /// events since the last update).
    pub fn update(&mut self, core: &Core, changes: &DirectoryChanges) {
        let mut nodes = changes.nodes.clone();
        let me = core.membership().me();
        if self.me != Some(me) {
            // A new life of ours (or the first update): our entries' visibility changed.
            nodes.extend(self.me.map(|old| old.node));
            nodes.insert(me.node);
            self.me = Some(me);
        }
        if changes.all {
            nodes.extend(self.owners(core));
        }
        let mut edits = Edits::default();
        for &node in &nodes {
            self.refresh_node(core, node, &mut edits);
        }
        for key in &changes.services {
            match ephemeral::parse(key) {
                Some((owner, name)) if !nodes.contains(&owner.node) => {
                    self.refresh_instance(core, owner, name, &mut edits)
                }
                _ => {}
            }
        }
        for key in &changes.interest {
            match ephemeral::parse(key) {
                Some((owner, pattern)) if !nodes.contains(&owner.node) => {
                    self.refresh_interest(core, owner.node, pattern)
                }
                _ => {}
            }
        }
        if !edits.services.is_empty() {
            edits.apply(Arc::make_mut(&mut self.services));
        }
        if changes.all || changes.agents_all || fault_on!(AgentDirectoryShowsDeadLives) {
            self.agents = Arc::new(AgentDirectory::build(core));
        } else if !nodes.is_empty() || !changes.agents.is_empty() {
            self.refresh_agents(core, &nodes, &changes.agents);
        }
    }

    /// Reads again the agents of `nodes` and the agent entries `keys` of other nodes.
    fn refresh_agents(&mut self, core: &Core, nodes: &BTreeSet<NodeId>, keys: &BTreeSet<String>) {
        let membership = core.membership();
        let replication = core.replication();
        // An entry is one per name and node: whichever life wrote the key, the node's visible
        // life's entry of that name is what stands there now.
        let changed: BTreeSet<(NodeId, &str)> = keys
            .iter()
            .filter_map(|key| ephemeral::parse(key))
            .filter(|(owner, _)| !nodes.contains(&owner.node))
            .map(|(owner, name)| (owner.node, name))
            .collect();
        let mut fresh = Vec::new();
        for &node in nodes {
            let Some(owner) = visible_owner(core, node) else {
                continue;
            };
            let prefix = ephemeral::key(owner, "");
            let space = replication.keyspace(AGENTS_KEYSPACE).into_iter();
            for (key, value) in space.flat_map(|space| space.prefixed(&prefix)) {
                let name = &key[prefix.len()..];
                fresh.extend(raw_entry(membership, owner, name, value));
            }
        }
        for &(node, name) in &changed {
            let Some(owner) = visible_owner(core, node) else {
                continue;
            };
            let value = replication.get(AGENTS_KEYSPACE, &ephemeral::key(owner, name));
            fresh.extend(value.and_then(|value| raw_entry(membership, owner, name, value)));
        }
        Arc::make_mut(&mut self.agents).refresh(membership.me().node, nodes, &changed, fresh);
    }

    /// Every node that owns an entry of the services or pub/sub keyspace, and every member.
    fn owners(&self, core: &Core) -> BTreeSet<NodeId> {
        let replication = core.replication();
        let mut owners: BTreeSet<NodeId> = core.membership().members().map(|m| m.id).collect();
        for keyspace in [SERVICES_KEYSPACE, PUBSUB_KEYSPACE] {
            let keys = replication.keyspace(keyspace).into_iter();
            owners.extend(
                keys.flat_map(|space| space.iter())
                    .filter_map(|(key, _)| Some(ephemeral::parse(key)?.0.node)),
            );
        }
        owners.extend(self.members.keys());
        owners
    }

    /// Reads everything `node` owns again, and whether it is a live member.
    fn refresh_node(&mut self, core: &Core, node: NodeId, edits: &mut Edits) {
        for (service, list) in self.services.iter() {
            if list.iter().any(|i| i.id.node == node) {
                edits
                    .of(service, &self.services)
                    .retain(|i| i.id.node != node);
            }
        }
        self.forget_interest_of(node);
        let owner = visible_owner(core, node);
        let addr = owner.and_then(|owner| addr_of(owner, core.membership()));
        self.set_member(node, addr);
        let Some(owner) = owner else {
            return;
        };
        let prefix = ephemeral::key(owner, "");
        let replication = core.replication();
        if let Some(space) = replication.keyspace(SERVICES_KEYSPACE) {
            for (key, value) in space.prefixed(&prefix) {
                let name = &key[prefix.len()..];
                if let Some(instance) = self.instance(core, owner, name, value) {
                    edits.of(&instance.service, &self.services).push(instance);
                }
            }
        }
        if let Some(space) = replication.keyspace(PUBSUB_KEYSPACE) {
            for (key, value) in space.prefixed(&prefix) {
                self.add_interest(core, owner, &key[prefix.len()..], value);
            }
        }
    }

    /// Drops every pattern `node` subscribed to, under whichever address it was indexed (one,
    /// unless its address changed).
    fn forget_interest_of(&mut self, node: NodeId) {
        if !self.interest.list.iter().any(|i| i.node.id == node) {
            return; // nothing to copy the interest for
        }
        let indexed = self.members.get(&node).copied().into_iter();
        let listed = self.interest.list.iter().filter(|i| i.node.id == node);
        let addrs: BTreeSet<NodeAddr> = indexed.chain(listed.map(|i| i.node)).collect();
        let interest = Arc::make_mut(&mut self.interest);
        for addr in addrs {
            interest.subscribers.remove_value(&addr);
        }
        interest.list.retain(|i| i.node.id != node);
    }

    /// Lists `node` at `addr` as a live member, or not at all without one.
    fn set_member(&mut self, node: NodeId, addr: Option<SocketAddr>) {
        let now = addr.map(|addr| NodeAddr { id: node, addr });
        if self.members.get(&node).copied() == now {
            return;
        }
        let members = Arc::make_mut(&mut self.members);
        match now {
            Some(at) => members.insert(node, at),
            None => members.remove(&node),
        };
    }

    /// Reads instance `name` of `owner` again.
    fn refresh_instance(&mut self, core: &Core, owner: Owner, name: &str, edits: &mut Edits) {
        let Some((service, local)) = parse_entry_name(name) else {
            return;
        };
        let id = InstanceId {
            node: owner.node,
            generation: owner.generation,
            local,
        };
        edits.of(service, &self.services).retain(|i| i.id != id);
        let key = ephemeral::key(owner, name);
        let value = core.replication().get(SERVICES_KEYSPACE, &key);
        let shown = value.filter(|_| ephemeral::visible(owner, core.membership()));
        if let Some(instance) = shown.and_then(|v| self.instance(core, owner, name, v)) {
            edits.of(service, &self.services).push(instance);
        }
    }

    /// The instance entry `name` of `owner` with bytes `value` stands for, if it is one.
    fn instance(&self, core: &Core, owner: Owner, name: &str, value: &[u8]) -> Option<Instance> {
        let (service, local) = parse_entry_name(name)?;
        let record = InstanceRecord::decode(value)?;
        let addr = addr_of(owner, core.membership())?;
        Some(Instance {
            service: service.to_owned(),
            id: InstanceId {
                node: owner.node,
                generation: owner.generation,
                local,
            },
            addr,
            record,
            local: Some(owner.node) == self.me.map(|me| me.node),
        })
    }

    /// Reads `node`'s interest in `pattern` again: held while the entry of the node's visible
    /// life exists (an entry of an older life coming or going changes nothing).
    fn refresh_interest(&mut self, core: &Core, node: NodeId, pattern: &str) {
        if let Some(at) = self
            .interest
            .list
            .iter()
            .position(|i| i.node.id == node && i.pattern == pattern)
        {
            let interest = Arc::make_mut(&mut self.interest);
            let gone = interest.list.remove(at);
            if let Ok(parsed) = Pattern::parse(pattern) {
                interest.subscribers.remove(&parsed, &gone.node);
            }
        }
        let Some(owner) = visible_owner(core, node) else {
            return;
        };
        let key = ephemeral::key(owner, pattern);
        if let Some(value) = core.replication().get(PUBSUB_KEYSPACE, &key) {
            self.add_interest(core, owner, pattern, value);
        }
    }

    fn add_interest(&mut self, core: &Core, owner: Owner, pattern: &str, value: &[u8]) {
        let Some(addr) = addr_of(owner, core.membership()) else {
            return;
        };
        let interest = Interest {
            node: NodeAddr {
                id: owner.node,
                addr,
            },
            pattern: pattern.to_owned(),
            bridge: value == BRIDGE_INTEREST,
        };
        let held = Arc::make_mut(&mut self.interest);
        // Entries that are not valid patterns were not written by a Foundation node.
        if let Ok(parsed) = Pattern::parse(pattern) {
            held.subscribers.insert(&parsed, interest.node);
        }
        if let Err(at) = held.list.binary_search(&interest) {
            held.list.insert(at, interest);
        }
    }
}

impl Directory {
    /// Where this directory and `other` differ, if they do (`None`: the same view). Used to
    /// check an incrementally kept directory against one built from scratch.
    pub fn difference(&self, other: &Directory) -> Option<String> {
        let instances = |d: &Directory| d.all().cloned().collect::<Vec<_>>();
        if instances(self) != instances(other) {
            return Some(format!(
                "instances differ: {:?} vs {:?}",
                instances(self),
                instances(other)
            ));
        }
        let (ours, theirs) = (&self.interest, &other.interest);
        if ours.list != theirs.list || ours.subscribers.len() != theirs.subscribers.len() {
            return Some(format!(
                "interest differs: {:?} vs {:?}",
                ours.list, theirs.list
            ));
        }
        if self.members != other.members {
            return Some(format!(
                "members differ: {:?} vs {:?}",
                self.members, other.members
            ));
        }
        (!self.agents.all().eq(other.agents.all())).then(|| "agents differ".to_owned())
    }
}

/// The life of `node` whose entries are shown: ours, or an alive member's.
fn visible_owner(core: &Core, node: NodeId) -> Option<Owner> {
    let membership = core.membership();
    let me = membership.me();
    if node == me.node {
        return Some(Owner::from(me));
    }
    let member = membership.member(node)?;
    let shown = member.state == MemberState::Alive || fault_on!(DirectoryShowsFailedLives);
    shown.then_some(Owner {
        node,
        generation: member.generation,
    })
}

/// Services whose instance lists are being changed: each is copied out once, edited, and put
/// back in instance id order once, however many of its instances changed.
#[derive(Default)]
struct Edits {
    services: BTreeMap<String, Vec<Instance>>,
}

impl Edits {
    /// The working list of `service`, copied from what `held` lists on first use.
    fn of(
        &mut self,
        service: &str,
        held: &BTreeMap<String, Arc<[Instance]>>,
    ) -> &mut Vec<Instance> {
        self.services
            .entry(service.to_owned())
            .or_insert_with(|| held.get(service).map(|l| l.to_vec()).unwrap_or_default())
    }

    fn apply(self, services: &mut BTreeMap<String, Arc<[Instance]>>) {
        for (service, mut list) in self.services {
            if list.is_empty() {
                services.remove(&service);
            } else {
                list.sort_by_key(|i| i.id);
                services.insert(service, list.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Effect;
    use crate::time::Instant;

    /// Writes `key` of `keyspace` on `core` and notes what it changed.
    fn write(core: &mut Core, keyspace: &str, key: &str, value: &[u8]) -> DirectoryChanges {
        core.set_ephemeral(Instant::ZERO, keyspace, key, Some(value.to_vec()))
            .expect("written");
        let mut changes = DirectoryChanges::default();
        while let Some(effect) = core.poll_effect() {
            if let Effect::Event(event) = effect {
                changes.note(&event);
            }
        }
        changes
    }

    /// A published copy shares every part an update leaves alone: an agent entry written
    /// copies neither the pub/sub interest nor the members nor the services (each spawn copied
    /// all three, ≈ 45 spawns a second beside 5,000 subscribed patterns), while a pattern
    /// subscribed copies the interest alone — and the copy still shows what it showed.
    #[test]
    fn an_update_copies_only_the_parts_it_changes() {
        let mut core = crate::node::lone_core();
        let mut directory = Directory::default();
        let billing = crate::services::record::entry_name("billing", 1);
        let instance = InstanceRecord::default().encode();
        for (keyspace, key, value) in [
            (PUBSUB_KEYSPACE, "orders.>", &b""[..]),
            (SERVICES_KEYSPACE, billing.as_str(), &instance),
        ] {
            let changes = write(&mut core, keyspace, key, value);
            directory.update(&core, &changes);
        }
        assert_eq!(directory.instances("billing").len(), 1);
        let published = directory.clone();
        let record = crate::agents::record::AgentRecord::default().encode();
        let changes = write(&mut core, AGENTS_KEYSPACE, "bidder", &record);
        directory.update(&core, &changes);
        assert_eq!(directory.agents().all().count(), 1);
        assert!(Arc::ptr_eq(&directory.interest, &published.interest));
        assert!(Arc::ptr_eq(&directory.members, &published.members));
        assert!(Arc::ptr_eq(&directory.services, &published.services));
        let changes = write(&mut core, PUBSUB_KEYSPACE, "stock.*", b"");
        directory.update(&core, &changes);
        assert!(!Arc::ptr_eq(&directory.interest, &published.interest));
        assert!(Arc::ptr_eq(&directory.members, &published.members));
        assert_eq!(
            (directory.interest().len(), published.interest().len()),
            (2, 1)
        );
        assert_eq!(directory.difference(&Directory::build(&core)), None);
    }

    /// A gateway's bridge subscription is marked as such, and a value rewritten (a user
    /// subscription joins it on the same node) is read again: updated as built from scratch.
    #[test]
    fn interest_held_only_by_a_gateway_bridge_is_marked_and_follows_its_value() {
        let mut core = crate::node::lone_core();
        let mut directory = Directory::default();
        let bridged = |d: &Directory| d.interest().iter().map(|i| i.bridge).collect::<Vec<_>>();
        for (value, marked) in [
            (BRIDGE_INTEREST, true),
            (b"", false),
            (BRIDGE_INTEREST, true),
        ] {
            let changes = write(&mut core, PUBSUB_KEYSPACE, "news.>", value);
            directory.update(&core, &changes);
            assert_eq!(bridged(&directory), [marked]);
            assert_eq!(directory.difference(&Directory::build(&core)), None);
        }
    }
}
