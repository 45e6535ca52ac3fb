//! Who should own an instance: rendezvous (highest random weight) hashing over the eligible
//! members, or the oldest eligible member. Pure functions of the instance and the member list,
//! so every node that sees the same members picks the same owner, and a join or leave moves only
//! the instances whose winner changed (about 1/N of them for rendezvous hashing).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::NodeId;

/// How the owner of an instance is chosen among the eligible members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Highest rendezvous hash of (instance, member): spreads shards, moves few on churn.
    #[default]
    Rendezvous,
    /// The member with the lowest generation (the runtime's generation is its start time),
    /// ties broken by node id: a singleton stays put while its node lives.
    Oldest,
}

/// One member a placement decision may pick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The node.
    pub id: NodeId,
    /// Its life (its start time in the runtime).
    pub generation: u64,
    /// Its tags, for eligibility.
    pub tags: BTreeMap<String, String>,
}

impl Candidate {
    /// Whether this member carries every tag in `require` with the same value.
    pub fn eligible(&self, require: &BTreeMap<String, String>) -> bool {
        carries(&self.tags, require)
    }
}

/// Whether `tags` hold every tag in `require` with the same value.
pub fn carries(tags: &BTreeMap<String, String>, require: &BTreeMap<String, String>) -> bool {
    require.iter().all(|(k, v)| tags.get(k) == Some(v))
}

/// The rendezvous weight of `node` for shard `shard` of `workload`. xxh3 rather than std's
/// hasher: every node of the cluster, whatever its Rust version, must compute the same weight.
pub fn weight(workload: &str, shard: u32, node: NodeId) -> u64 {
    let mut bytes = Vec::with_capacity(workload.len() + 1 + 4 + 16);
    bytes.extend_from_slice(workload.as_bytes());
    // A separator no name contains at its end keeps ("ab", 1) and ("a", ...) apart.
    bytes.push(0);
    bytes.extend_from_slice(&shard.to_le_bytes());
    bytes.extend_from_slice(&node.as_u128().to_le_bytes());
    xxh3_64(&bytes)
}

/// The owner of shard `shard` of `workload` among `candidates` (already filtered to the eligible
/// ones), or `None` when there are none.
pub fn owner(rule: Rule, workload: &str, shard: u32, candidates: &[Candidate]) -> Option<NodeId> {
    match rule {
        Rule::Rendezvous => candidates
            .iter()
            .max_by_key(|c| (weight(workload, shard, c.id), c.id))
            .map(|c| c.id),
        Rule::Oldest => candidates
            .iter()
            .min_by_key(|c| (c.generation, c.id))
            .map(|c| c.id),
    }
}

/// The shard of `key` among `shards` (at least 1): a stable hash, so every node routes a key to
/// the same shard.
pub fn shard_of(key: &[u8], shards: u32) -> u32 {
    (xxh3_64(key) % u64::from(shards.max(1))) as u32
}
