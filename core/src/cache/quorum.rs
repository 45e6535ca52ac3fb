//! The opt-in quorum rule of a partitioned cache: one computation of a key at a time
//! cluster-wide, partitions included.
//!
//! Without it, each side of a partition picks owners among the members it sees, so two sides
//! may each grant a computation of one key. With it
//! ([`CacheSettings::quorum`](super::CacheSettings::quorum)), an owner grants only
//! - while this node sees alive a majority of the *agreed* membership — placement's own
//!   (`Placement::agreed`: members join it when seen alive and leave it only when they leave
//!   gracefully, so no side shrinks its way into a majority) — and at least
//!   [`QuorumRule::min_members`] members; otherwise a computation is refused with
//!   [`CacheError::NoQuorum`](super::CacheError::NoQuorum);
//! - and only for a key it owned, with such a majority, in every view it held over the last
//!   *fence* ([`QuorumRule::fence`]): the longest a grant can run (`max_run`, to which grants are
//!   capped, plus the lease margin) plus `settle`, room for one side to see a partition, a heal
//!   or a join later than the other. Until then the callers wait (within their deadlines).
//!
//! So a key's new owner — after a partition, a heal, a join or a restart (a node that just
//! declared the cache knows nothing older) — grants only once every grant its previous owner
//! may have made has ended, provided that owner saw the change no more than `settle` later.
//! Reads, puts and near copies are not affected: a side without a majority still serves what
//! it holds (values may be older than the other side's, until their TTL or the heal).

use std::collections::VecDeque;
use std::time::Duration;

use crate::placement::rendezvous::Candidate;
use crate::time::Instant;
use crate::NodeId;

/// The quorum rule's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumRule {
    /// Longest a granted computation may run: grants are capped to it.
    pub max_run: Duration,
    /// How much later than another member this node may see a view change (a partition, a
    /// heal, a join): about the failure detector's spread.
    pub settle: Duration,
    /// Alive members (this node included) this node must see before it grants, besides the
    /// majority: set it to a majority of the expected cluster, so that a node started during a
    /// partition, which has not met the other side's members, does not count itself a majority.
    pub min_members: usize,
}

impl Default for QuorumRule {
    /// 10 s runs, 5 s settle, no minimum beyond the majority.
    fn default() -> Self {
        Self {
            max_run: Duration::from_secs(10),
            settle: Duration::from_secs(5),
            min_members: 1,
        }
    }
}

impl QuorumRule {
    /// How long a node must have owned a key with a majority before it grants it.
    pub fn fence(&self, lease_margin: Duration) -> Duration {
        self.max_run + lease_margin + self.settle
    }
}

/// What the rule says of granting one key now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Grant,
    /// Not before then.
    WaitUntil(Instant),
    NoQuorum,
}

/// At most this many views remembered; older ones forgotten make the rule wait longer, never
/// less.
const MAX_VIEWS: usize = 64;

/// One view this node held, from `since`.
struct View {
    since: Instant,
    candidates: Vec<Candidate>,
    majority: bool,
}

/// The views this node held lately (kept only while a cache with the rule is declared).
#[derive(Default)]
pub(super) struct History {
    views: VecDeque<View>,
}

impl History {
    /// Notes the view at `now`, if it differs from the last one noted.
    pub(super) fn note(&mut self, now: Instant, candidates: &[Candidate], majority: bool) {
        let same = self
            .views
            .back()
            .is_some_and(|v| v.majority == majority && v.candidates == candidates);
        if same {
            return;
        }
        self.views.push_back(View {
            since: now,
            candidates: candidates.to_vec(),
            majority,
        });
        if self.views.len() > MAX_VIEWS {
            self.views.pop_front();
        }
    }

    /// Forgets views that ended more than `fence` ago: they cannot change a verdict.
    pub(super) fn prune(&mut self, now: Instant, fence: Duration) {
        while self.views.len() > 1 && self.views[1].since + fence <= now {
            self.views.pop_front();
        }
    }

    /// Whether `me` may grant the key whose owner among a view's candidates `owner` gives,
    /// under `rule` with `fence`.
    pub(super) fn verdict(
        &self,
        now: Instant,
        rule: &QuorumRule,
        fence: Duration,
        me: NodeId,
        owner: impl Fn(&[Candidate]) -> NodeId,
    ) -> Verdict {
        let quorate = |v: &View| v.majority && v.candidates.len() >= rule.min_members;
        let Some(current) = self.views.back() else {
            return Verdict::NoQuorum;
        };
        if !quorate(current) {
            return Verdict::NoQuorum;
        }
        if fault_on!(CacheQuorumNoFence) {
            return Verdict::Grant;
        }
        // Nothing is known before the first view noted.
        let mut ready = self.views.front().map_or(now, |v| v.since + fence);
        for (i, view) in self.views.iter().enumerate() {
            if quorate(view) && owner(&view.candidates) == me {
                continue;
            }
            let end = self.views.get(i + 1).map_or(now, |next| next.since);
            ready = ready.max(end + fence);
        }
        if ready <= now {
            Verdict::Grant
        } else {
            Verdict::WaitUntil(ready)
        }
    }

    /// Views remembered.
    pub(super) fn len(&self) -> usize {
        self.views.len()
    }
}

impl super::Caches {
    /// Whether any declared cache has the quorum rule (the history is kept only then).
    fn any_quorum(&self) -> bool {
        self.caches.values().any(|c| c.settings.quorum.is_some())
    }

    /// Notes the current view and majority in the history, if a cache has the rule.
    pub(super) fn note_view(&mut self, now: Instant) {
        if !self.any_quorum() {
            return;
        }
        self.history.note(now, &self.candidates, self.majority);
        let fence = self
            .caches
            .values()
            .filter_map(|c| Some(c.settings.quorum.as_ref()?.fence(c.settings.lease_margin)))
            .max()
            .unwrap_or_default();
        self.history.prune(now, fence);
    }

    /// What the rule of cache `name` (if it has one) says of granting `key` now.
    pub(super) fn verdict(&self, now: Instant, name: &str, key: &[u8]) -> Verdict {
        let Some(cache) = self.caches.get(name) else {
            return Verdict::Grant;
        };
        let Some(rule) = &cache.settings.quorum else {
            return Verdict::Grant;
        };
        let fence = rule.fence(cache.settings.lease_margin);
        let owner =
            |candidates: &[Candidate]| super::owner_among(name, key, candidates, self.me.node);
        self.history.verdict(now, rule, fence, self.me.node, owner)
    }

    /// Refuses the waiters of flights that wait for the rule, where it now says no quorum.
    pub(super) fn refuse_without_quorum(&mut self, now: Instant) {
        let waiting: Vec<(String, bytes::Bytes)> = self
            .caches
            .iter()
            .filter(|(_, c)| c.settings.quorum.is_some())
            .flat_map(|(name, c)| {
                let fenced = c.flights.iter().filter(|(_, f)| f.token == 0);
                fenced.map(move |(key, _)| (name.clone(), key.clone()))
            })
            .collect();
        for (name, key) in waiting {
            if self.verdict(now, &name, &key) == Verdict::NoQuorum {
                self.grant_next(now, &name, &key);
            }
        }
    }

    /// Sends `NoQuorum` to every waiter of the flight of `key` and ends it.
    pub(super) fn refuse_flight(&mut self, name: &str, key: &bytes::Bytes) {
        let Some(cache) = self.caches.get_mut(name) else {
            return;
        };
        let Some(flight) = cache.flights.remove(key) else {
            return;
        };
        cache.stats.refused += flight.waiters.len() as u64;
        for w in flight.waiters {
            let message = super::CacheMessage::NoQuorum {
                cache: name.to_owned(),
                key: key.to_vec(),
                req: w.req,
            };
            self.send(w.node, message);
        }
    }

    /// Views the rule remembers.
    pub fn quorum_views(&self) -> usize {
        self.history.len()
    }
}
