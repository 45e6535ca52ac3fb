//! The simulated network: per-link delay, loss, duplication and reordering for datagrams, and
//! QUIC-like streams.
//!
//! # The model
//!
//! - **Datagrams** (the membership channel) behave like UDP inside a QUIC connection: each one is
//!   independently lost with probability `loss`, duplicated with probability `duplicate`, and held
//!   back by up to `reorder_delay` with probability `reorder` (so later datagrams overtake it).
//!   Delay is `latency` plus an exponential tail of scale `jitter` (capped at
//!   [`JITTER_TAIL_MAX`] scales). A partition drops datagrams in the blocked direction only: a
//!   one-way partition lets the other direction through, as it does in the seconds before QUIC's
//!   idle timeout closes the connection.
//! - **Streams** (coordination, replication, events, rpc, bulk) are ordered and reliable per
//!   (sender, receiver, channel) while the connection is up: a lost packet costs a retransmission
//!   ([`RETRANSMIT_DELAY_MIN`] plus three latencies) instead of the message, and a message never
//!   overtakes an earlier one on the same channel. A stream needs both directions (QUIC acks), so
//!   a partition in either direction, or a crash of either end, drops the connection: messages
//!   in flight on it are lost, and messages sent while it is blocked are lost. This is stricter
//!   than QUIC, which would hold data for up to its idle timeout (5 s by default) and deliver it
//!   if the path came back; the engine must cope with the loss either way.
//! - There is no bandwidth model: a message's size does not change its delay. Sizes are counted
//!   and checked against the transport's per-channel frame limits.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::time::Duration;

use foundation_core::Channel;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

/// Largest delay tail, in multiples of `jitter`: keeps one unlucky draw from delaying a packet
/// for minutes, which no real LAN does.
pub const JITTER_TAIL_MAX: f64 = 8.0;
/// The least a lost stream packet costs (QUIC's probe timeout floor on a fast network).
pub const RETRANSMIT_DELAY_MIN: Duration = Duration::from_millis(10);
/// Most retransmissions of one stream packet before the model stops drawing losses (a loss rate
/// near 1 would otherwise loop for long).
const RETRANSMITS_MAX: u32 = 8;

/// How one direction of a link behaves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkModel {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Scale of the random delay added to `latency` (exponential tail).
    pub jitter: Duration,
    /// Probability a datagram (or a stream packet, which is then retransmitted) is lost.
    pub loss: f64,
    /// Probability a datagram arrives twice.
    pub duplicate: f64,
    /// Probability a datagram is held back by up to `reorder_delay`.
    pub reorder: f64,
    /// Longest hold-back of a reordered datagram.
    pub reorder_delay: Duration,
}

impl LinkModel {
    /// A quiet data-center LAN: 0.5 ms one way, 0.2 ms jitter, nothing lost.
    pub fn lan() -> Self {
        Self {
            latency: Duration::from_micros(500),
            jitter: Duration::from_micros(200),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
        }
    }

    /// A bad network: 2 ms, 1 ms jitter, 5 % loss, 2 % duplicates, 5 % reordered by up to 30 ms.
    pub fn flaky() -> Self {
        Self {
            latency: Duration::from_millis(2),
            jitter: Duration::from_millis(1),
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.05,
            reorder_delay: Duration::from_millis(30),
        }
    }

    /// Checks probabilities are probabilities.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be between 0 and 1, got {p}"));
            }
        }
        Ok(())
    }

    fn delay(&self, rng: &mut StdRng) -> u64 {
        Draws::of(self).delay(rng)
    }
}

/// What a link's draws read of its model, in the units they use: taken once per model, not
/// per datagram, with the model's own conversions.
#[derive(Clone, Copy, Debug)]
struct Draws {
    latency_us: u64,
    jitter_us: f64,
    loss: f64,
    duplicate: f64,
    reorder: f64,
    reorder_delay_us: u64,
}

impl Draws {
    fn of(model: &LinkModel) -> Self {
        Self {
            latency_us: model.latency.as_micros() as u64,
            jitter_us: micros_f64(model.jitter),
            loss: model.loss,
            duplicate: model.duplicate,
            reorder: model.reorder,
            reorder_delay_us: model.reorder_delay.as_micros() as u64,
        }
    }

    /// `latency` plus the exponential tail.
    fn delay(&self, rng: &mut StdRng) -> u64 {
        let tail = -(1.0 - rng.gen::<f64>()).ln();
        let jitter = self.jitter_us * tail.min(JITTER_TAIL_MAX);
        self.latency_us + jitter as u64
    }
}

/// `duration` in microseconds, as `as_micros() as f64` gives it up to 2⁶⁴ µs (584,000 years;
/// longer saturates there): converted from 64 bits, both conversions rounding to the nearest,
/// without the 128-bit conversion's library call on every datagram. (Picking the 64-bit path
/// when the value fits does not do: the compiler merges both paths into the 128-bit one.)
fn micros_f64(duration: Duration) -> f64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX) as f64
}

/// A set of node slots, as a bitmap over slot indices.
pub type SlotSet = Vec<bool>;

/// Traffic from `from` to `to` is blocked.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockRule {
    /// Senders.
    pub from: SlotSet,
    /// Receivers.
    pub to: SlotSet,
}

impl BlockRule {
    /// Whether this rule blocks traffic from `from` to `to`.
    pub fn blocks(&self, from: usize, to: usize) -> bool {
        self.from.get(from).copied().unwrap_or(false) && self.to.get(to).copied().unwrap_or(false)
    }
}

#[derive(Clone, Debug)]
struct LinkOverride {
    from: SlotSet,
    to: SlotSet,
    model: LinkModel,
    draws: Draws,
}

/// Counters of what the network did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    /// Datagrams dropped by random loss.
    pub datagrams_lost: u64,
    /// Datagrams dropped by a partition.
    pub datagrams_blocked: u64,
    /// Extra copies delivered.
    pub datagrams_duplicated: u64,
    /// Datagrams held back for reordering.
    pub datagrams_reordered: u64,
    /// Stream messages lost because their connection dropped.
    pub stream_messages_dropped: u64,
    /// Stream packets retransmitted after a random loss.
    pub stream_retransmits: u64,
}

/// One sender's latest delivery time per stream, by (receiver, channel). Hashed with fixed
/// keys ([`TailHasher`]), so even the map's layout is the same on every run.
type StreamTails = HashMap<(u32, Channel), u64, BuildHasherDefault<TailHasher>>;

/// A stream tail key's hash: a multiply-and-rotate fold of its words with a final mix (the
/// keys are two slots and a channel, not attacker-chosen, so SipHash's strength bought
/// nothing but a tenth of a stream message's cost).
#[derive(Default)]
pub struct TailHasher(u64);

impl TailHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for TailHasher {
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits and its tag from the high ones: mix both.
        let h = self.0 ^ (self.0 >> 29);
        h.wrapping_mul(Self::K) ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.add(u64::from(byte));
        }
    }

    fn write_u32(&mut self, word: u32) {
        self.add(u64::from(word));
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.add(word as u64);
    }
}

/// When the copies of one datagram arrive: none (lost or blocked), one, or two (duplicated).
/// A fixed pair, not a `Vec`: one is drawn for every datagram sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    at: [u64; 2],
    len: usize,
}

impl Arrivals {
    fn push(&mut self, at: u64) {
        self.at[self.len] = at;
        self.len += 1;
    }

    /// How many copies arrive.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the datagram is lost.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl IntoIterator for Arrivals {
    type Item = u64;
    type IntoIter = std::iter::Take<std::array::IntoIter<u64, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        self.at.into_iter().take(self.len)
    }
}

/// Stream tails kept before the past ones are first dropped.
const STREAM_TAILS_KEPT: usize = 4096;

/// The network between node slots: link models, partitions and stream connections.
#[derive(Debug)]
pub struct Network {
    default: LinkModel,
    /// `default`'s draws.
    default_draws: Draws,
    overrides: Vec<LinkOverride>,
    rules: Vec<BlockRule>,
    /// Connection generation per unordered slot pair; bumped when a partition drops it.
    connections: BTreeMap<(usize, usize), u64>,
    /// Latest delivery time per (from, to, channel), so streams stay ordered: one map per
    /// sender slot, since a node sends its messages in a burst when it handles an input, and
    /// one small map stays in cache for the burst where one map of every stream (hundreds of
    /// thousands during a mass join) cost a cache miss per message. A tail not after `now`
    /// orders nothing (a message sent now arrives at `now` or later), so such entries are
    /// dropped once the maps together have doubled: otherwise they keep every pair that ever
    /// exchanged a stream message, O(N²) after a mass join. Hash maps: they are only looked up
    /// and pruned, never walked in an order that matters.
    stream_tails: Vec<StreamTails>,
    /// Tails in `stream_tails`, all senders together.
    stream_tails_len: usize,
    /// `stream_tails_len` that triggers the next drop of past tails.
    stream_tail_prune_at: usize,
    stats: NetStats,
}

impl Network {
    /// A network where every link behaves like `model`.
    pub fn new(model: LinkModel) -> Self {
        Self {
            default_draws: Draws::of(&model),
            default: model,
            overrides: Vec::new(),
            rules: Vec::new(),
            connections: BTreeMap::new(),
            stream_tails: Vec::new(),
            stream_tails_len: 0,
            stream_tail_prune_at: STREAM_TAILS_KEPT,
            stats: NetStats::default(),
        }
    }

    /// What the network did so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Active block rules.
    pub fn rules(&self) -> &[BlockRule] {
        &self.rules
    }

    /// Whether traffic from `from` to `to` is blocked now.
    pub fn blocked(&self, from: usize, to: usize) -> bool {
        self.rules.iter().any(|r| r.blocks(from, to))
    }

    /// Replaces the model of every link without an override.
    pub fn set_default(&mut self, model: LinkModel) {
        self.default_draws = Draws::of(&model);
        self.default = model;
    }

    /// Links from `from` to `to` behave like `model` from now on (the latest override wins).
    pub fn set_link(&mut self, from: SlotSet, to: SlotSet, model: LinkModel) {
        let draws = Draws::of(&model);
        self.overrides.push(LinkOverride {
            from,
            to,
            model,
            draws,
        });
    }

    /// Blocks traffic from `from` to `to`, dropping every connection that crosses the cut.
    pub fn block(&mut self, rule: BlockRule) {
        for a in (0..rule.from.len()).filter(|&a| rule.from[a]) {
            for b in (0..rule.to.len()).filter(|&b| rule.to[b]) {
                *self.connections.entry(pair(a, b)).or_default() += 1;
            }
        }
        self.rules.push(rule);
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.rules.clear();
    }

    /// The generation of the connection between two slots.
    pub fn connection(&self, a: usize, b: usize) -> u64 {
        self.connections.get(&pair(a, b)).copied().unwrap_or(0)
    }

    /// When copies of a datagram sent now arrive (none if it is dropped).
    pub fn datagram(&mut self, rng: &mut StdRng, from: usize, to: usize, now: u64) -> Arrivals {
        let mut arrivals = Arrivals::default();
        if self.blocked(from, to) {
            self.stats.datagrams_blocked += 1;
            return arrivals;
        }
        let draws = self.link(from, to).map_or(self.default_draws, |o| o.draws);
        if rng.gen::<f64>() < draws.loss {
            self.stats.datagrams_lost += 1;
            return arrivals;
        }
        arrivals.push(now + self.datagram_delay(rng, &draws));
        if rng.gen::<f64>() < draws.duplicate {
            self.stats.datagrams_duplicated += 1;
            arrivals.push(now + self.datagram_delay(rng, &draws));
        }
        arrivals
    }

    /// When a stream message sent now arrives, and on which connection generation; `None` if the
    /// connection is blocked (the message is lost).
    pub fn stream(
        &mut self,
        rng: &mut StdRng,
        from: usize,
        to: usize,
        channel: Channel,
        now: u64,
    ) -> Option<(u64, u64)> {
        if self.blocked(from, to) || self.blocked(to, from) {
            self.stats.stream_messages_dropped += 1;
            return None;
        }
        let model = self.model(from, to).clone();
        let mut at = now + model.delay(rng);
        for _ in 0..RETRANSMITS_MAX {
            if rng.gen::<f64>() >= model.loss {
                break;
            }
            self.stats.stream_retransmits += 1;
            at += (RETRANSMIT_DELAY_MIN + model.latency * 3).as_micros() as u64;
        }
        at = self.ordered(from, to, channel, at, now);
        Some((at, self.connection(from, to)))
    }

    /// Ordered delivery: a message on a stream that would arrive at `at` arrives no earlier
    /// than the previous one on the stream; records when it does.
    fn ordered(&mut self, from: usize, to: usize, channel: Channel, at: u64, now: u64) -> u64 {
        if self.stream_tails.len() <= from {
            self.stream_tails
                .resize_with(from + 1, StreamTails::default);
        }
        let tails = &mut self.stream_tails[from];
        let before = tails.len();
        let tail = tails.entry(stream_key(to, channel)).or_default();
        let at = at.max(*tail);
        *tail = at;
        self.stream_tails_len += tails.len() - before;
        if self.stream_tails_len >= self.stream_tail_prune_at {
            for tails in &mut self.stream_tails {
                tails.retain(|_, tail| *tail > now);
            }
            self.stream_tails_len = self.stream_tails.iter().map(HashMap::len).sum();
            self.stream_tail_prune_at = (2 * self.stream_tails_len).max(STREAM_TAILS_KEPT);
        }
        at
    }

    /// Counts a stream message lost to a dropped connection.
    pub fn count_stream_drop(&mut self) {
        self.stats.stream_messages_dropped += 1;
    }

    fn datagram_delay(&mut self, rng: &mut StdRng, draws: &Draws) -> u64 {
        let mut delay = draws.delay(rng);
        if rng.gen::<f64>() < draws.reorder {
            self.stats.datagrams_reordered += 1;
            delay += rng.gen_range(0..=draws.reorder_delay_us);
        }
        delay
    }

    fn model(&self, from: usize, to: usize) -> &LinkModel {
        self.link(from, to).map_or(&self.default, |o| &o.model)
    }

    /// The override of the link from `from` to `to`, if any (the latest wins).
    fn link(&self, from: usize, to: usize) -> Option<&LinkOverride> {
        self.overrides.iter().rev().find(|o| {
            o.from.get(from).copied().unwrap_or(false) && o.to.get(to).copied().unwrap_or(false)
        })
    }
}

/// A stream's key in its sender's tails: the receiver's slot as `u32` (8 bytes, not 16: the
/// maps hold one entry per stream with a message in flight, hundreds of thousands during a
/// mass join).
fn stream_key(to: usize, channel: Channel) -> (u32, Channel) {
    let slot = u32::try_from(to).expect("fewer than 2³² node slots");
    (slot, channel)
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn microseconds_convert_as_the_128_bit_conversion_does() {
        let odd = [
            1,
            199,
            200,
            999_999,
            (1 << 53) + 1,
            u64::MAX / 1_000_000 + 7,
            u64::MAX,
        ];
        let mut durations: Vec<Duration> = odd.into_iter().map(Duration::from_micros).collect();
        durations.extend([Duration::ZERO, Duration::from_secs(u64::MAX / 2_000_000)]);
        for duration in durations {
            assert_eq!(micros_f64(duration), duration.as_micros() as f64);
        }
        assert_eq!(micros_f64(Duration::MAX), u64::MAX as f64);
    }

    fn set(n: usize, members: &[usize]) -> SlotSet {
        (0..n).map(|i| members.contains(&i)).collect()
    }

    #[test]
    fn a_one_way_partition_blocks_datagrams_one_way_and_streams_both_ways() {
        let mut net = Network::new(LinkModel::lan());
        let mut rng = StdRng::seed_from_u64(1);
        net.block(BlockRule {
            from: set(2, &[0]),
            to: set(2, &[1]),
        });
        assert!(net.datagram(&mut rng, 0, 1, 0).is_empty());
        assert_eq!(net.datagram(&mut rng, 1, 0, 0).len(), 1);
        assert!(net
            .stream(&mut rng, 1, 0, Channel::Replication, 0)
            .is_none());
        assert_eq!(net.connection(1, 0), 1, "the cut dropped the connection");
    }

    #[test]
    fn past_stream_tails_are_dropped_and_order_holds_across_the_drop() {
        let mut net = Network::new(LinkModel::flaky());
        let mut rng = StdRng::seed_from_u64(3);
        let mut last = BTreeMap::new();
        for now in 0..(4 * STREAM_TAILS_KEPT as u64) {
            // Many pairs, each used again a while later: some tails are live at each drop.
            let from = (now as usize * 7) % (3 * STREAM_TAILS_KEPT);
            let (at, _) = net
                .stream(&mut rng, from, from + 1, Channel::Replication, now * 100)
                .unwrap();
            let before = last.insert(from, at).unwrap_or(0);
            assert!(at >= before, "pair {from} overtook itself");
        }
        assert!(net.stream_tails_len < 2 * STREAM_TAILS_KEPT);
        let counted: usize = net.stream_tails.iter().map(HashMap::len).sum();
        assert_eq!(counted, net.stream_tails_len);
    }

    #[test]
    fn stream_messages_never_overtake_each_other() {
        let mut net = Network::new(LinkModel::flaky());
        let mut rng = StdRng::seed_from_u64(2);
        let mut last = 0;
        for now in 0..500 {
            let (at, _) = net
                .stream(&mut rng, 0, 1, Channel::Replication, now)
                .unwrap();
            assert!(at >= last);
            last = at;
        }
    }
}
