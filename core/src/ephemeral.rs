//! Ephemeral entries: replicated keys that exist only while the node life that wrote them is
//! alive — the service registry's instances and pub/sub's subscription interest.
//!
//! An entry's key starts with its owner, `{node:032x}.{generation}/{name}`, where `generation`
//! is the owner's *membership* generation. Readers show an entry only while membership shows
//! that exact node life alive ([`visible`]), so a node declared failed drops out of every view
//! the moment each node learns of the failure — no replication round needed — and a restarted
//! node (a newer generation) never brings its previous life's entries back.
//!
//! Three things keep the keyspace itself in line with that rule, on a reconcile timer:
//! - the owner rewrites its entries whenever the keyspace disagrees with what it holds: after
//!   it rejoins under a new generation (old keys deleted, new ones written), or after a reaper
//!   on the far side of a partition deleted them;
//! - the reaper — the live node with the smallest id, so usually one node does it — deletes
//!   entries of node lives that have been failed or left for [`EphemeralConfig::reap_after`],
//!   or that membership has forgotten (or never learnt) for as long;
//! - everything is a normal replicated write, so it converges like any other.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::NodeId;

use crate::membership::{MemberId, MemberState, MemberView, Membership};
use crate::replication::{Replication, Write};
use crate::time::Instant;

/// The keyspace of the service registry.
pub const SERVICES_KEYSPACE: &str = "services";
/// The keyspace of pub/sub subscription interest.
pub const PUBSUB_KEYSPACE: &str = "pubsub";
/// The keyspace of the agent directory.
pub const AGENTS_KEYSPACE: &str = "agents";

/// Ephemeral entries' settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EphemeralConfig {
    /// Keyspaces whose keys are ephemeral; writes of ephemeral entries elsewhere are refused.
    pub keyspaces: BTreeSet<String>,
    /// How often owners repair their entries and the reaper runs.
    pub reconcile_interval: Duration,
    /// How long a node life must have been failed, left or forgotten before its entries are
    /// deleted from the keyspace (they are hidden from readers at once).
    pub reap_after: Duration,
}

impl Default for EphemeralConfig {
    fn default() -> Self {
        Self {
            keyspaces: [SERVICES_KEYSPACE, PUBSUB_KEYSPACE, AGENTS_KEYSPACE]
                .into_iter()
                .map(String::from)
                .collect(),
            reconcile_interval: Duration::from_secs(1),
            reap_after: Duration::from_secs(30),
        }
    }
}

/// A node life that owns entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// The node.
    pub node: NodeId,
    /// Its membership generation.
    pub generation: u64,
}

impl From<MemberId> for Owner {
    fn from(id: MemberId) -> Self {
        Owner {
            node: id.node,
            generation: id.generation,
        }
    }
}

/// The replicated key of `owner`'s entry `name`.
pub fn key(owner: Owner, name: &str) -> String {
    format!("{:032x}.{}/{name}", owner.node.as_u128(), owner.generation)
}

/// Splits a replicated key into its owner and name; `None` if it is not an ephemeral key.
pub fn parse(key: &str) -> Option<(Owner, &str)> {
    let (owner, name) = key.split_once('/')?;
    let (node, generation) = owner.split_once('.')?;
    if node.len() != 32 {
        return None;
    }
    let node = NodeId::from_u128(u128::from_str_radix(node, 16).ok()?);
    let generation = generation.parse().ok()?;
    Some((Owner { node, generation }, name))
}

/// Whether `name` is 1 to `max` characters of `A-Z a-z 0-9 . _ -`: the names (services,
/// agents) that go into entry keys, where `/` separates key parts.
pub fn plain_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `owner`'s entries should be shown by a node whose membership is `membership`: the
/// owner is this node's current life, or a node life membership holds alive.
pub fn visible(owner: Owner, membership: &Membership) -> bool {
    let me = membership.me();
    if owner.node == me.node {
        return owner.generation == me.generation;
    }
    membership
        .member(owner.node)
        .is_some_and(|m| m.state == MemberState::Alive && m.generation == owner.generation)
}

/// Why an ephemeral write was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EphemeralError {
    /// The keyspace is not one of the ephemeral ones.
    #[error("keyspace {0:?} does not hold ephemeral entries (EphemeralConfig::keyspaces)")]
    NotEphemeral(String),
    /// The name is empty.
    #[error("an ephemeral entry needs a non-empty name")]
    EmptyName,
}

/// This node's ephemeral entries and the reaper's memory.
#[derive(Debug)]
pub struct Ephemeral {
    config: EphemeralConfig,
    /// What we own: `(keyspace, name) -> value`.
    owned: BTreeMap<(String, String), Vec<u8>>,
    /// Owners membership no longer (or does not yet) know, and since when we have seen them so.
    orphans: BTreeMap<Owner, Instant>,
    ticking: bool,
}

impl Ephemeral {
    /// A node owning nothing yet.
    pub fn new(config: EphemeralConfig) -> Self {
        Self {
            config,
            owned: BTreeMap::new(),
            orphans: BTreeMap::new(),
            ticking: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &EphemeralConfig {
        &self.config
    }

    /// Records that we own `name` in `keyspace` with `value` (`None`: no longer own it), and
    /// returns the replicated write that says so, keyed under `me`.
    pub fn set(
        &mut self,
        me: Owner,
        keyspace: &str,
        name: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Write, EphemeralError> {
        if !self.config.keyspaces.contains(keyspace) {
            return Err(EphemeralError::NotEphemeral(keyspace.to_owned()));
        }
        if name.is_empty() {
            return Err(EphemeralError::EmptyName);
        }
        let slot = (keyspace.to_owned(), name.to_owned());
        match &value {
            Some(v) => self.owned.insert(slot, v.clone()),
            None => self.owned.remove(&slot),
        };
        Ok(Write {
            keyspace: keyspace.to_owned(),
            key: key(me, name),
            value,
        })
    }

    /// The value we own under `name` in `keyspace`: the one authoritative copy of our entry
    /// (the keyspace holds the replicated one, which a reaper may delete and we then repair).
    pub fn owned(&self, keyspace: &str, name: &str) -> Option<&[u8]> {
        self.owned
            .get(&(keyspace.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
    }

    /// What we own lies in ephemeral keyspaces under non-empty names, and the reconcile timer
    /// runs once we own anything (so a reaped entry of ours is repaired).
    pub fn invariants(&self) -> Result<(), String> {
        for (keyspace, name) in self.owned.keys() {
            if !self.config.keyspaces.contains(keyspace) || name.is_empty() {
                return Err(format!(
                    "an owned ephemeral entry {name:?} of {keyspace:?} is not a valid one"
                ));
            }
        }
        if !self.owned.is_empty() && !self.ticking {
            return Err("ephemeral entries are owned but the reconcile timer never started".into());
        }
        Ok(())
    }

    /// Whether the reconcile timer should start: it is not armed yet (once armed it runs for
    /// good), and we own something or hold others' entries.
    pub fn wants_ticking(&self, replication: &Replication) -> bool {
        // Asked after every input: a node already ticking, or holding no keyspace at all (no
        // replicated data yet), is answered without a lookup per configured name.
        !self.ticking
            && (!self.owned.is_empty()
                || (replication.keyspace_names().next().is_some()
                    && self
                        .config
                        .keyspaces
                        .iter()
                        .any(|k| replication.keyspace(k).is_some())))
    }

    /// Marks the timer armed; returns whether it was not already.
    pub fn start_ticking(&mut self) -> bool {
        !std::mem::replace(&mut self.ticking, true)
    }

    /// The writes that bring the keyspaces in line with what we own and with membership.
    pub fn reconcile(
        &mut self,
        now: Instant,
        replication: &Replication,
        membership: &Membership,
    ) -> Vec<Write> {
        let me = Owner::from(membership.me());
        let mut writes = self.repair_own(me, replication);
        let reaper = membership.alive().all(|m| m.id > me.node);
        let mut seen_orphans = BTreeSet::new();
        for keyspace in self.config.keyspaces.clone() {
            let Some(space) = replication.keyspace(&keyspace) else {
                continue;
            };
            for (key, _) in space.iter() {
                let Some((owner, name)) = parse(key) else {
                    continue;
                };
                let delete = if owner.node == me.node {
                    owner.generation != me.generation
                        || !self
                            .owned
                            .contains_key(&(keyspace.clone(), name.to_owned()))
                } else {
                    reaper
                        && !fault_on!(ReaperNeverDeletes)
                        && self.expired(
                            now,
                            owner,
                            membership.member(owner.node).as_ref(),
                            &mut seen_orphans,
                        )
                };
                if delete {
                    writes.push(Write {
                        keyspace: keyspace.clone(),
                        key: key.to_owned(),
                        value: None,
                    });
                }
            }
        }
        self.orphans.retain(|owner, _| seen_orphans.contains(owner));
        writes
    }

    /// Our entries missing from, or different in, the keyspaces.
    fn repair_own(&self, me: Owner, replication: &Replication) -> Vec<Write> {
        self.owned
            .iter()
            .filter_map(|((keyspace, name), value)| {
                let key = key(me, name);
                (replication.get(keyspace, &key) != Some(value.as_slice())).then(|| Write {
                    keyspace: keyspace.clone(),
                    key,
                    value: Some(value.clone()),
                })
            })
            .collect()
    }

    /// Whether `owner`'s entries have been dead long enough to delete, membership knowing its
    /// node as `known`.
    fn expired(
        &mut self,
        now: Instant,
        owner: Owner,
        known: Option<&MemberView>,
        seen_orphans: &mut BTreeSet<Owner>,
    ) -> bool {
        let reap_after = self.config.reap_after;
        match known {
            Some(m) if m.generation > owner.generation => true,
            Some(m) if m.generation == owner.generation => {
                m.state != MemberState::Alive && now.saturating_since(m.since) >= reap_after
            }
            // A life newer than membership knows is usually joining, and membership learns it
            // within a probe period or two. But a life can end before anyone learns it (its node
            // renewed behind a cut and crashed) while its entries spread; then nothing else
            // would ever delete them, so it gets an orphan's patience.
            Some(_) | None => {
                seen_orphans.insert(owner);
                let since = *self.orphans.entry(owner).or_insert(now);
                now.saturating_since(since) >= reap_after
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A life membership never learnt — its node renewed and crashed before its new
    /// generation reached anyone, while its entries spread — is reaped like one membership
    /// forgot: `reap_after` after the reaper first saw it, not never (`--scenario chaos --nodes 5
    /// --seed 963`: n3's life 579432 was in every keyspace at the end, 78 s after its crash,
    /// every member holding n3's node at 579431, failed).
    #[test]
    fn a_life_newer_than_membership_knows_is_reaped_as_an_orphan() {
        let mut ephemeral = Ephemeral::new(EphemeralConfig::default());
        let id = MemberId {
            node: NodeId::from_u128(3),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7003)),
            generation: 579431,
        };
        let t0 = Instant::ZERO;
        let failed = MemberView::new(&id, MemberState::Failed, t0);
        let newer = Owner {
            node: id.node,
            generation: 579432,
        };
        let mut expired = |at: Duration, known: &MemberView| {
            let mut seen = BTreeSet::new();
            let expired = ephemeral.expired(t0 + at, newer, Some(known), &mut seen);
            ephemeral.orphans.retain(|owner, _| seen.contains(owner));
            expired
        };
        assert!(!expired(Duration::from_secs(40), &failed), "first seen now");
        assert!(!expired(Duration::from_secs(69), &failed));
        assert!(
            expired(Duration::from_secs(70), &failed),
            "reap_after later"
        );
    }

    #[test]
    fn keys_round_trip_and_reject_foreign_shapes() {
        let owner = Owner {
            node: NodeId::from_u128(0xabc),
            generation: 17,
        };
        let k = key(owner, "billing/3");
        assert_eq!(parse(&k), Some((owner, "billing/3")));
        assert_eq!(parse("plain-key"), None);
        assert_eq!(parse("abc.17/x"), None);
        assert_eq!(parse(&format!("{:032x}.x/y", 5)), None);
    }
}
