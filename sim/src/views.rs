//! What each node saw over a run, for pictures (`foundation sim --html`): every node's view of
//! the cluster on the runner's check interval, the bytes each node had sent, and the partitions
//! the world was cut into, with their sides.
//!
//! Recording only reads the world (no core is touched, no random number drawn), so a run that
//! records views has the same trace hash as one that does not.

use serde::Serialize;

use crate::invariants::membership::live_set;
use crate::network::BlockRule;
use crate::world::{NodeStatus, World};

/// How a node's view compared with the truth at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewState {
    /// No core runs on the slot.
    Down,
    /// The core runs but processes nothing (a stall).
    Stalled,
    /// It lists exactly the live nodes (ids and generations) as alive, and suspects no one.
    Agrees,
    /// It lists the live nodes as alive, but suspects some of them.
    Suspects,
    /// It lists a dead node as alive, or misses a live one.
    Differs,
}

/// One stretch of time over which a node's view did not change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ViewSpan {
    /// Start, in simulated seconds.
    pub from_secs: f64,
    /// End, in simulated seconds.
    pub to_secs: f64,
    /// How the view compared with the truth.
    pub state: ViewState,
    /// Nodes it listed alive, itself included (0 when down).
    pub alive: usize,
    /// Members it suspected.
    pub suspects: usize,
    /// Members it listed as failed or left.
    pub gone: usize,
    /// Nodes that were really up.
    pub live: usize,
}

/// The bytes every node had sent by one moment (membership datagrams and stream messages on
/// every channel).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BytesSample {
    /// Simulated seconds.
    pub at_secs: f64,
    /// Bytes sent since the start of the run, by slot.
    pub sent: Vec<u64>,
}

/// One partition layout and how long it held.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionSpan {
    /// Start, in simulated seconds.
    pub from_secs: f64,
    /// End, in simulated seconds.
    pub to_secs: f64,
    /// Groups of slots whose links to each other were open both ways.
    pub sides: Vec<Vec<usize>>,
    /// Each cut, as (senders, receivers) whose traffic was blocked.
    pub cuts: Vec<(Vec<usize>, Vec<usize>)>,
    /// Whether some link was cut in one direction only.
    pub one_way: bool,
}

/// Everything recorded for the pictures of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Views {
    /// Each slot's view over time.
    pub nodes: Vec<Vec<ViewSpan>>,
    /// Bytes sent per slot, sampled about once a second.
    pub bytes: Vec<BytesSample>,
    /// Partitions in force, in time order.
    pub partitions: Vec<PartitionSpan>,
}

/// Samples a world into [`Views`].
#[derive(Debug, Default)]
pub struct ViewRecorder {
    views: Views,
    bytes_every_us: u64,
    next_bytes_us: u64,
    views_every_us: u64,
    next_views_us: u64,
}

/// Member comparisons one run may spend on views (each sample compares every node's list with
/// the live set: nodes² in all), so that large clusters are sampled less often.
const COMPARISONS_MAX: u128 = 200_000_000;

impl ViewRecorder {
    /// A recorder for a run of `duration_us` over `nodes` slots: bytes are sampled about once
    /// a second, at most 600 times; views on every call, or less often when the cluster is so
    /// large that comparing every view that often would cost more than 200 million member
    /// comparisons in the whole run.
    pub fn new(duration_us: u64, nodes: usize) -> Self {
        let square = (nodes as u128).pow(2);
        Self {
            bytes_every_us: (duration_us / 600).max(1_000_000),
            views_every_us: u64::try_from(u128::from(duration_us) * square / COMPARISONS_MAX)
                .unwrap_or(u64::MAX),
            ..Self::default()
        }
    }

    /// Takes note of every node's view now (when it is time to).
    pub fn sample(&mut self, world: &World) {
        let now_us = world.now_us();
        if now_us < self.next_views_us {
            return;
        }
        self.next_views_us = now_us.saturating_add(self.views_every_us);
        let at_secs = now_us as f64 / 1e6;
        let live = live_set(world);
        self.views.nodes.resize_with(world.nodes().len(), Vec::new);
        for (slot, spans) in self.views.nodes.iter_mut().enumerate() {
            let span = view_of(world, slot, &live, at_secs);
            // Spans meet: a view holds until the sample that saw it change.
            match spans.last_mut() {
                Some(last) if last.same_view(&span) => last.to_secs = at_secs,
                Some(last) => {
                    last.to_secs = at_secs;
                    spans.push(span);
                }
                None => spans.push(span),
            }
        }
        if now_us >= self.next_bytes_us {
            self.next_bytes_us = now_us + self.bytes_every_us;
            self.views.bytes.push(BytesSample {
                at_secs,
                sent: world
                    .nodes()
                    .iter()
                    .map(|n| bytes_sent(n.traffic()))
                    .collect(),
            });
        }
    }

    /// The views, with the partitions taken from the world's topology history.
    pub fn finish(mut self, world: &World) -> Views {
        self.next_views_us = 0;
        self.sample(world);
        self.views.partitions = partitions(world);
        self.views
    }
}

impl ViewSpan {
    fn same_view(&self, other: &ViewSpan) -> bool {
        (self.state, self.alive, self.suspects, self.gone, self.live)
            == (
                other.state,
                other.alive,
                other.suspects,
                other.gone,
                other.live,
            )
    }
}

fn bytes_sent(t: &crate::world::NodeTraffic) -> u64 {
    t.datagram_bytes_sent + t.stream_bytes_sent
}

/// How `slot` sees the cluster now, against the `live` set.
fn view_of(
    world: &World,
    slot: usize,
    live: &std::collections::BTreeSet<(foundation_core::NodeId, u64)>,
    at_secs: f64,
) -> ViewSpan {
    let node = world.node(slot);
    let mut span = ViewSpan {
        from_secs: at_secs,
        to_secs: at_secs,
        state: ViewState::Down,
        alive: 0,
        suspects: 0,
        gone: 0,
        live: live.len(),
    };
    let Some(core) = node.core() else {
        return span;
    };
    let membership = core.membership();
    let me = (node.id(), node.generation());
    span.alive = membership.alive_count() + 1;
    span.suspects = membership.suspects().count();
    span.gone = membership.members().count() - membership.alive_count();
    let seen = membership.alive().map(|m| (m.id, m.generation));
    let agrees = seen.eq(live.iter().copied().filter(|l| *l != me));
    span.state = match (node.status(), agrees, span.suspects) {
        (NodeStatus::Stalled, ..) => ViewState::Stalled,
        (_, false, _) => ViewState::Differs,
        (_, true, 0) => ViewState::Agrees,
        (_, true, _) => ViewState::Suspects,
    };
    span
}

/// The partition layouts of the run, each with its sides and cuts.
fn partitions(world: &World) -> Vec<PartitionSpan> {
    let history = world.topology_history();
    let n = world.nodes().len();
    let end = world.now_us();
    history
        .iter()
        .enumerate()
        .filter(|(_, (_, rules))| !rules.is_empty())
        .map(|(i, (from, rules))| {
            let to = history.get(i + 1).map_or(end, |(t, _)| *t);
            PartitionSpan {
                from_secs: *from as f64 / 1e6,
                to_secs: to as f64 / 1e6,
                sides: sides(rules, n),
                one_way: one_way(rules, n),
                cuts: rules
                    .iter()
                    .map(|r| (members(&r.from), members(&r.to)))
                    .collect(),
            }
        })
        .collect()
}

/// Whether some pair of slots is cut in one direction and open in the other.
fn one_way(rules: &[BlockRule], n: usize) -> bool {
    let blocked = |a: usize, b: usize| rules.iter().any(|r| r.blocks(a, b));
    (0..n).any(|a| (0..n).any(|b| blocked(a, b) && !blocked(b, a)))
}

fn members(set: &[bool]) -> Vec<usize> {
    (0..set.len()).filter(|&i| set[i]).collect()
}

/// Groups of slots joined by links open in both directions, each in slot order, ordered by
/// their first slot.
fn sides(rules: &[BlockRule], n: usize) -> Vec<Vec<usize>> {
    let blocked = |a: usize, b: usize| rules.iter().any(|r| r.blocks(a, b));
    let mut side_of: Vec<Option<usize>> = vec![None; n];
    let mut sides: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if side_of[start].is_some() {
            continue;
        }
        let id = sides.len();
        side_of[start] = Some(id);
        let (mut side, mut frontier) = (vec![start], vec![start]);
        while let Some(a) = frontier.pop() {
            for (b, of_b) in side_of.iter_mut().enumerate() {
                if of_b.is_none() && !blocked(a, b) && !blocked(b, a) {
                    *of_b = Some(id);
                    side.push(b);
                    frontier.push(b);
                }
            }
        }
        side.sort_unstable();
        sides.push(side);
    }
    sides
}

/// Slots written compactly: `n0–n3, n7`.
pub fn slot_list(slots: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < slots.len() {
        let mut j = i;
        while j + 1 < slots.len() && slots[j + 1] == slots[j] + 1 {
            j += 1;
        }
        parts.push(match j - i {
            0 => format!("n{}", slots[i]),
            1 => format!("n{}, n{}", slots[i], slots[j]),
            _ => format!("n{}–n{}", slots[i], slots[j]),
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// The name of side `index`: A, B, … Z, then S26, S27, …
pub fn side_name(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => char::from(b'A' + i).to_string(),
        _ => format!("S{index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_the_groups_open_both_ways() {
        let set = |slots: &[usize]| (0..5).map(|i| slots.contains(&i)).collect::<Vec<bool>>();
        let two_way = [
            BlockRule {
                from: set(&[0, 1]),
                to: set(&[2, 3, 4]),
            },
            BlockRule {
                from: set(&[2, 3, 4]),
                to: set(&[0, 1]),
            },
        ];
        assert_eq!(sides(&two_way, 5), vec![vec![0, 1], vec![2, 3, 4]]);
        // A side needs both directions open: a one-way cut separates the same sides.
        assert_eq!(sides(&two_way[..1], 5), vec![vec![0, 1], vec![2, 3, 4]]);
        assert!(!one_way(&two_way, 5));
        assert!(one_way(&two_way[..1], 5));
        assert_eq!(sides(&[], 3), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn slot_lists_are_compact() {
        assert_eq!(slot_list(&[0, 1, 2, 3, 7]), "n0–n3, n7");
        assert_eq!(slot_list(&[4, 5]), "n4, n5");
        assert_eq!(slot_list(&[]), "");
        assert_eq!(side_name(1), "B");
        assert_eq!(side_name(30), "S30");
    }
}
