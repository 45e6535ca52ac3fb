//! Interest sent back over a bridge: a cluster tells the gateways of each linked cluster which
//! of their topics it would deliver, so their forwarder sends only those (NATS's interest
//! propagation between clusters and leaf nodes is the model).
//!
//! - What it is. A set of patterns ([`BridgeInterest`]): this cluster's import patterns from
//!   that cluster, each narrowed to its intersection with every live subscription pattern in
//!   this cluster ([`TopicBridges::interest`]). The intersection of two patterns is itself a
//!   pattern or nothing, computed exactly ([`intersect`]); a pattern covered by another is left
//!   out. Past [`MAX_SENT_PATTERNS`] patterns the interest falls back to the import patterns
//!   that meet some subscription: wider than needed, never narrower, so a topic the receiving
//!   cluster would deliver is never held back. The gateways' own subscriptions to their exported
//!   patterns are not subscribers (they deliver nothing here) and are left out by the caller.
//! - Who sends it. The receiving cluster's forwarder (the gateway that would forward its own
//!   exports, [`is_forwarder`](super::is_forwarder)) sends it to every configured gateway of
//!   the linked cluster, so whichever of them forwards holds it ([`InterestSender`]). It is
//!   sent when it changed since the target took it in, when the link comes up, and again every
//!   [`InterestTimers::resend`] so a lost one heals; one request in flight per target keeps
//!   them in order (also across a reset: the link's fall, or our no longer telling). A gateway
//!   that stops telling over a link still up tells [`BridgeInterest::everything`] once: the
//!   linked cluster keeps the last interest it heard from any of our gateways.
//! - What the sender of messages does with it ([`HeardInterest`]): a message crosses when it
//!   matches an export to that cluster and the latest interest heard from it. With no interest
//!   heard, or the last one older than [`InterestTimers::expire`], or the link down since,
//!   everything exported crosses as before this existed: a gateway of an older release, which
//!   never sends interest, still gets everything (backward compatible), and a gateway that
//!   stopped sending interest cannot leave a stale one narrowing the link for ever.
//! - On the wire it is a new request kind (`FederationRequest::Interest`). An older gateway
//!   fails to decode it and answers `Refused`, which changes nothing on the link (probes, calls
//!   and bridged messages go on); the sender then tries again only every `resend`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::bridge::TopicBridges;
use super::link::WanTimers;
use crate::identity::ClusterName;
use crate::services::topic::{Pattern, Topic, TopicError};
use crate::time::Instant;

/// Most patterns of a narrowed interest a gateway sends; past it, the import patterns that
/// meet a subscription stand in (as many as the bridge configuration names).
pub const MAX_SENT_PATTERNS: usize = 256;
/// Most intersections of imports and subscriptions pruned to [`MAX_SENT_PATTERNS`]: pruning
/// compares every pair, so past this the import patterns stand in at once (a cluster with ten
/// thousand per-agent subscriptions under one import would otherwise cost 10⁸ comparisons on
/// every change of its directory).
const MAX_PRUNED_PATTERNS: usize = 4 * MAX_SENT_PATTERNS;
/// Most patterns in an interest a gateway takes in; a larger one is refused (and everything
/// crosses, as with no interest).
pub const MAX_HEARD_PATTERNS: usize = 4096;

/// The topics a cluster would deliver from one linked cluster: sorted, none covered by another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeInterest(Vec<Pattern>);

impl BridgeInterest {
    /// The interest in exactly the topics `patterns` match, without redundant patterns.
    pub fn of(patterns: impl IntoIterator<Item = Pattern>) -> Self {
        let all: BTreeSet<Pattern> = patterns.into_iter().collect();
        let kept = all
            .iter()
            .filter(|p| !all.iter().any(|q| q != *p && covers(q, p)))
            .cloned()
            .collect();
        Self(kept)
    }

    /// The interest in every topic: what a gateway that stops telling leaves behind, so that
    /// nothing it said narrows the link until it expires.
    pub fn everything() -> Self {
        Self(vec![Pattern::parse(">").expect("`>` is a pattern")])
    }

    /// The patterns, sorted.
    pub fn patterns(&self) -> &[Pattern] {
        &self.0
    }

    /// True when `topic` is wanted.
    pub fn wants(&self, topic: &Topic) -> bool {
        self.0.iter().any(|p| p.matches(topic))
    }

    /// The patterns as sent on the wire.
    pub fn to_wire(&self) -> Vec<String> {
        self.0.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

/// Why a received interest was not taken in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterestError {
    /// More patterns than [`MAX_HEARD_PATTERNS`].
    #[error("an interest of {0} patterns, more than the {MAX_HEARD_PATTERNS} taken")]
    TooLarge(usize),
    /// A pattern that does not parse.
    #[error("interest pattern {pattern:?}: {source}")]
    Pattern {
        /// As received.
        pattern: String,
        /// What is wrong with it.
        source: TopicError,
    },
}

/// The topics both `a` and `b` match, as one pattern, or `None` when no topic is matched by
/// both. Exact: a topic matches the result if and only if it matches `a` and `b`.
pub fn intersect(first: &Pattern, second: &Pattern) -> Option<Pattern> {
    let a: Vec<&str> = first.segments().collect();
    let b: Vec<&str> = second.segments().collect();
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    for i in 0.. {
        match (a.get(i).copied(), b.get(i).copied()) {
            (None, None) => break,
            // `>` takes one or more segments: the other's rest, which has at least one here.
            (Some(">"), Some(_)) => {
                out.extend_from_slice(&b[i..]);
                break;
            }
            (Some(_), Some(">")) => {
                out.extend_from_slice(&a[i..]);
                break;
            }
            (None, Some(_)) | (Some(_), None) => return None,
            (Some("*"), Some(s)) | (Some(s), Some("*")) => out.push(s),
            (Some(x), Some(y)) if x == y => out.push(x),
            _ => return None,
        }
    }
    // Each segment is a valid pattern's, so only the length can fail, when the two take their
    // literals from different places: a topic is at least as long as a pattern it matches, so
    // none that long is valid, and no topic is matched by both.
    Pattern::parse(&out.join(".")).ok()
}

/// True when every topic `narrow` matches is matched by `wide`.
pub fn covers(wide: &Pattern, narrow: &Pattern) -> bool {
    let (mut w, mut n) = (wide.segments(), narrow.segments());
    loop {
        match (w.next(), n.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some(_), Some(">")) | (None, Some(_)) | (Some(_), None) => return false,
            (Some("*"), Some(_)) => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

impl TopicBridges {
    /// What this cluster would deliver from `from`: its imports from there, narrowed to the
    /// live `subscribed` patterns of this cluster (not the gateways' own bridge subscriptions).
    pub fn interest<'a>(
        &self,
        from: &ClusterName,
        subscribed: impl IntoIterator<Item = &'a Pattern>,
    ) -> BridgeInterest {
        let imports = self.import_patterns(from);
        let subscribed: BTreeSet<&Pattern> = subscribed.into_iter().collect();
        let met: BTreeSet<Pattern> = imports
            .iter()
            .flat_map(|i| subscribed.iter().filter_map(|s| intersect(i, s)))
            .take(MAX_PRUNED_PATTERNS + 1)
            .collect();
        if met.len() <= MAX_PRUNED_PATTERNS {
            let narrowed = BridgeInterest::of(met);
            if narrowed.0.len() <= MAX_SENT_PATTERNS {
                return narrowed;
            }
        }
        BridgeInterest::of(
            imports
                .iter()
                .filter(|i| subscribed.iter().any(|s| intersect(i, s).is_some()))
                .cloned(),
        )
    }
}

/// How often interest is sent again, retried, and how long a heard one holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterestTimers {
    /// An unchanged interest is sent again this long after the target last took it in.
    pub resend: Duration,
    /// After a send without an answer, the next try waits this long.
    pub retry: Duration,
    /// A heard interest not refreshed for this long is forgotten (everything crosses).
    pub expire: Duration,
}

impl InterestTimers {
    /// Paced by the link's probes: resent every 6 probe intervals, retried after one, and
    /// forgotten after three resends are missed.
    pub fn from_wan(timers: &WanTimers) -> Self {
        let resend = timers.probe_interval.saturating_mul(6);
        Self {
            resend,
            retry: timers.probe_interval,
            expire: resend.saturating_mul(3) + timers.probe_timeout,
        }
    }
}

/// An interest the driver is to send to one gateway of a linked cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterestToSend {
    /// The linked cluster.
    pub cluster: ClusterName,
    /// Its gateway.
    pub gateway: SocketAddr,
    /// What to tell it.
    pub interest: BridgeInterest,
    /// The target's tenure the send belongs to ([`Target::tenure`]).
    tenure: u64,
}

/// How a send of interest ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterestSent {
    /// The target took it in.
    Taken,
    /// No answer: tried again after [`InterestTimers::retry`].
    Failed,
    /// The target answered with a refusal (an older release does not know the request):
    /// tried again after [`InterestTimers::resend`] only.
    Refused,
}

/// What one gateway of a linked cluster was told.
#[derive(Clone, Debug, Default)]
struct Target {
    /// Whether we tell it now: its link is up and this gateway is the one that tells. Only
    /// then does a send fall due by time.
    active: bool,
    told: Option<BridgeInterest>,
    not_before: Instant,
    refresh_at: Instant,
    /// A send is out. It outlives a reset, so that no second send overtakes it: the target
    /// keeps whichever arrives last.
    in_flight: bool,
    /// We stopped telling it over a link still up after it was told (or while a send was
    /// out): it is owed [`BridgeInterest::everything`], sent once no send is out.
    owes_everything: bool,
    /// Counts resets: the answer to a send from before one says nothing of what the target
    /// holds now (its link went down meanwhile, or we stopped telling).
    tenure: u64,
}

impl Target {
    /// Forgets what it was told, so it is told at once when it is ours to tell again; a send
    /// still out stays counted.
    fn reset(&mut self) {
        *self = Self {
            in_flight: self.in_flight,
            owes_everything: self.owes_everything,
            tenure: self.tenure + 1,
            ..Self::default()
        };
    }

    /// The target is not ours to tell now (`link_up` or not): forgets what it was told, and
    /// returns the withdrawal it is owed, if it can go now.
    fn stop(&mut self, link_up: bool) -> Option<BridgeInterest> {
        let spoke = self.active && (self.told.is_some() || self.in_flight);
        self.owes_everything = link_up && (self.owes_everything || spoke);
        self.reset();
        if !self.owes_everything || self.in_flight {
            return None;
        }
        self.owes_everything = false;
        Some(BridgeInterest::everything())
    }

    fn due(&self, now: Instant, wanted: &BridgeInterest) -> bool {
        !self.in_flight
            && now >= self.not_before
            && (self.told.as_ref() != Some(wanted) || now >= self.refresh_at)
    }
}

/// The receiving side: tells each linked cluster's gateways this cluster's interest.
#[derive(Clone, Debug)]
pub struct InterestSender {
    timers: InterestTimers,
    targets: BTreeMap<(ClusterName, SocketAddr), Target>,
}

impl InterestSender {
    /// Sends to `gateways`, per linked cluster, paced by `timers`.
    pub fn new(
        timers: InterestTimers,
        gateways: impl IntoIterator<Item = (ClusterName, SocketAddr)>,
    ) -> Self {
        let targets = gateways
            .into_iter()
            .map(|target| (target, Target::default()))
            .collect();
        Self { timers, targets }
    }

    /// The sends due at `now`, given the links that are `up` and the interest `wanted` per
    /// linked cluster (empty while this gateway is not the one that tells). A target whose link
    /// is down or that is not to be told forgets what it was told, so it is told at once when
    /// that changes. One that was told something and is no longer ours to tell, over a link
    /// still up, is told [`BridgeInterest::everything`] once: what we said would otherwise
    /// narrow the link until it expires there, though the gateway now telling (after a
    /// restart, one that saw too little of the cluster yet) may never correct it.
    pub fn poll(
        &mut self,
        now: Instant,
        up: &BTreeSet<ClusterName>,
        wanted: &BTreeMap<ClusterName, BridgeInterest>,
    ) -> Vec<InterestToSend> {
        let mut sends = Vec::new();
        for ((cluster, gateway), target) in &mut self.targets {
            let link_up = up.contains(cluster);
            let interest = match wanted.get(cluster).filter(|_| link_up) {
                Some(interest) => {
                    target.active = true;
                    target.owes_everything = false;
                    Some(interest.clone()).filter(|i| target.due(now, i))
                }
                None => target.stop(link_up),
            };
            if let Some(interest) = interest {
                target.in_flight = true;
                sends.push(InterestToSend {
                    cluster: cluster.clone(),
                    gateway: *gateway,
                    interest,
                    tenure: target.tenure,
                });
            }
        }
        sends
    }

    /// What became of `send`. An answer to a send the target has since forgotten is ignored.
    pub fn answered(&mut self, now: Instant, send: &InterestToSend, outcome: InterestSent) {
        let key = (send.cluster.clone(), send.gateway);
        let Some(target) = self.targets.get_mut(&key).filter(|t| t.in_flight) else {
            return;
        };
        target.in_flight = false;
        if !target.active || target.tenure != send.tenure {
            return; // reset since (or a withdrawal): nothing it holds is ours to keep up
        }
        match outcome {
            InterestSent::Taken => {
                target.told = Some(send.interest.clone());
                target.refresh_at = now + self.timers.resend;
            }
            InterestSent::Failed => {
                target.told = None;
                target.not_before = now + self.timers.retry;
            }
            InterestSent::Refused => {
                target.told = None;
                target.not_before = now + self.timers.resend;
            }
        }
    }

    /// The earliest moment a send may fall due without a change of input.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.targets
            .values()
            .filter(|t| t.active && !t.in_flight)
            .map(|t| match t.told {
                Some(_) => t.refresh_at.max(t.not_before),
                None => t.not_before,
            })
            .min()
    }

    /// What `cluster`'s gateways were last told and took in, if all of them agree.
    pub fn told(&self, cluster: &ClusterName) -> Option<&BridgeInterest> {
        let mut told = self
            .targets
            .iter()
            .filter(|((c, _), _)| c == cluster)
            .map(|(_, t)| t.told.as_ref());
        let first = told.next()??;
        told.all(|t| t == Some(first)).then_some(first)
    }
}

/// The sending side: the latest interest heard from each linked cluster.
#[derive(Clone, Debug)]
pub struct HeardInterest {
    expire: Duration,
    heard: BTreeMap<ClusterName, (BridgeInterest, Instant)>,
}

impl HeardInterest {
    /// Holds each heard interest for `timers.expire`.
    pub fn new(timers: InterestTimers) -> Self {
        Self {
            expire: timers.expire,
            heard: BTreeMap::new(),
        }
    }

    /// Takes in `patterns`, the interest `from` sent at `now`. One that cannot be read is
    /// refused and the one held before is forgotten: everything crosses rather than too little.
    pub fn heard(
        &mut self,
        now: Instant,
        from: &ClusterName,
        patterns: &[String],
    ) -> Result<(), InterestError> {
        let parsed = parse(patterns);
        match &parsed {
            Ok(interest) => self.heard.insert(from.clone(), (interest.clone(), now)),
            Err(_) => self.heard.remove(from),
        };
        parsed.map(|_| ())
    }

    /// Forgets what `cluster` said (its link went down).
    pub fn forget(&mut self, cluster: &ClusterName) {
        self.heard.remove(cluster);
    }

    /// The interest of `cluster` that holds at `now`: `None` means everything.
    pub fn current(&self, now: Instant, cluster: &ClusterName) -> Option<&BridgeInterest> {
        let (interest, at) = self.heard.get(cluster)?;
        (now.saturating_since(*at) < self.expire).then_some(interest)
    }

    /// True when a message of `topic` exported to `cluster` is to cross.
    pub fn wants(&self, now: Instant, cluster: &ClusterName, topic: &Topic) -> bool {
        self.current(now, cluster).is_none_or(|i| i.wants(topic))
    }
}

fn parse(patterns: &[String]) -> Result<BridgeInterest, InterestError> {
    if patterns.len() > MAX_HEARD_PATTERNS {
        return Err(InterestError::TooLarge(patterns.len()));
    }
    let parsed = patterns.iter().map(|pattern| {
        Pattern::parse(pattern).map_err(|source| InterestError::Pattern {
            pattern: pattern.clone(),
            source,
        })
    });
    // Not pruned: that compares every pair, and any linked gateway could make us do it.
    let patterns: BTreeSet<Pattern> = parsed.collect::<Result<_, _>>()?;
    Ok(BridgeInterest(patterns.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::BridgeConfig;
    use crate::services::topic::tests::{pattern_strategy, topic_strategy};
    use proptest::prelude::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    fn t(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    fn name(s: &str) -> ClusterName {
        ClusterName::new(s).unwrap()
    }

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    /// This cluster imports `import` from cluster `a`.
    fn importing(import: &[Pattern]) -> TopicBridges {
        let bridge = BridgeConfig {
            cluster: "a".into(),
            export: Vec::new(),
            import: import.iter().map(|p| p.as_str().to_owned()).collect(),
        };
        TopicBridges::new(&[name("a")].into(), &[bridge]).unwrap()
    }

    fn strs(interest: &BridgeInterest) -> Vec<&str> {
        interest.patterns().iter().map(Pattern::as_str).collect()
    }

    #[test]
    fn patterns_intersect_segment_by_segment() {
        let cases = [
            ("news.>", "news.weather", Some("news.weather")),
            ("news.>", "*.sport", Some("news.sport")),
            ("news.>", ">", Some("news.>")),
            ("news.*", "news.>", Some("news.*")),
            ("news.>", "*.*.x", Some("news.*.x")),
            ("*.b", "a.*", Some("a.b")),
            ("news.>", "news", None),
            ("news.*", "news.a.b", None),
            ("news.>", "sport.>", None),
        ];
        for (a, b, want) in cases {
            let got = intersect(&p(a), &p(b));
            assert_eq!(got.as_ref().map(Pattern::as_str), want, "{a} ∩ {b}");
            assert_eq!(intersect(&p(b), &p(a)), got, "{b} ∩ {a}");
        }
    }

    #[test]
    fn the_interest_is_the_imports_narrowed_to_the_subscriptions() {
        let bridges = importing(&[p("news.>"), p("prices.*")]);
        let subscribed = [
            p("news.weather"),
            p("news.weather.eu"),
            p("orders.>"),
            p("*.oil"),
        ];
        let interest = bridges.interest(&name("a"), &subscribed);
        assert_eq!(
            strs(&interest),
            ["news.oil", "news.weather", "news.weather.eu", "prices.oil"]
        );
        // A subscription to everything: the imports themselves, nothing redundant.
        let all = bridges.interest(&name("a"), &[p(">"), p("news.x")]);
        assert_eq!(strs(&all), ["news.>", "prices.*"]);
        assert!(bridges
            .interest(&name("a"), &[p("orders.>")])
            .patterns()
            .is_empty());
        assert!(bridges
            .interest(&name("b"), &[p(">")])
            .patterns()
            .is_empty());
    }

    #[test]
    fn past_the_limit_the_imports_that_meet_a_subscription_stand_in() {
        let bridges = importing(&[p("user.>"), p("news.>")]);
        let many: Vec<Pattern> = (0..=MAX_SENT_PATTERNS)
            .map(|i| p(&format!("user.{i}")))
            .collect();
        assert_eq!(strs(&bridges.interest(&name("a"), &many)), ["user.>"]);
        let fewer = &many[..MAX_SENT_PATTERNS];
        assert_eq!(
            bridges.interest(&name("a"), fewer).patterns().len(),
            MAX_SENT_PATTERNS
        );
    }

    /// Ten thousand per-agent subscriptions under one import are not pruned pair by pair: the
    /// import stands in (wider, never narrower).
    #[test]
    fn far_past_the_limit_the_imports_stand_in_without_pruning() {
        let bridges = importing(&[p("agent.>")]);
        let many: Vec<Pattern> = (0..10_000).map(|i| p(&format!("agent.{i}.>"))).collect();
        assert_eq!(strs(&bridges.interest(&name("a"), &many)), ["agent.>"]);
    }

    /// The property below meets only short patterns. Two long ones whose literals lie apart
    /// meet in a pattern past the length limit, which no valid topic matches: the answer was
    /// `first` (wider than both, `x….z` crossed though `*.y…` wanted none of it).
    #[test]
    fn patterns_meeting_past_the_length_limit_have_no_intersection() {
        let (x, y) = ("x".repeat(200), "y".repeat(200));
        let first = p(&format!("{x}.*"));
        let second = p(&format!("*.{y}"));
        assert_eq!(intersect(&first, &second), None);
        assert_eq!(intersect(&second, &first), None);
        let first_only = t(&format!("{x}.z"));
        assert!(first.matches(&first_only) && !second.matches(&first_only));
    }

    proptest! {
        #[test]
        fn an_intersection_matches_exactly_what_both_match(
            a in pattern_strategy(), b in pattern_strategy(), topic in topic_strategy()
        ) {
            let both = a.matches(&topic) && b.matches(&topic);
            let got = intersect(&a, &b);
            prop_assert_eq!(got.as_ref().is_some_and(|i| i.matches(&topic)), both, "{:?}", got);
        }

        #[test]
        fn a_covering_pattern_matches_whatever_the_covered_one_does(
            wide in pattern_strategy(), narrow in pattern_strategy(), topic in topic_strategy()
        ) {
            if covers(&wide, &narrow) && narrow.matches(&topic) {
                prop_assert!(wide.matches(&topic));
            }
        }

        /// Never narrower: a topic imported and subscribed to in this cluster is wanted.
        #[test]
        fn the_interest_never_leaves_out_a_topic_that_would_be_delivered(
            imports in prop::collection::vec(pattern_strategy(), 1..4),
            subscribed in prop::collection::vec(pattern_strategy(), 0..400),
            topic in topic_strategy(),
        ) {
            let interest = importing(&imports).interest(&name("a"), &subscribed);
            let delivered = imports.iter().any(|i| i.matches(&topic))
                && subscribed.iter().any(|s| s.matches(&topic));
            if delivered {
                prop_assert!(interest.wants(&topic), "{:?} left out of {:?}", topic, interest);
            }
        }
    }

    fn timers() -> InterestTimers {
        InterestTimers {
            resend: Duration::from_secs(6),
            retry: Duration::from_secs(1),
            expire: Duration::from_secs(20),
        }
    }

    fn gw(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A sender to cluster `a`'s gateways on ports 1 and 2.
    fn sender() -> InterestSender {
        InterestSender::new(timers(), [(name("a"), gw(1)), (name("a"), gw(2))])
    }

    fn up() -> BTreeSet<ClusterName> {
        [name("a")].into()
    }

    fn wanting(patterns: &[&str]) -> BTreeMap<ClusterName, BridgeInterest> {
        [(name("a"), BridgeInterest::of(patterns.iter().map(|s| p(s))))].into()
    }

    /// Polls at `ms` and answers every send with `outcome`; returns the gateways sent to.
    fn round(
        sender: &mut InterestSender,
        ms: u64,
        up: &BTreeSet<ClusterName>,
        wanted: &BTreeMap<ClusterName, BridgeInterest>,
        outcome: InterestSent,
    ) -> Vec<u16> {
        let sends = sender.poll(at(ms), up, wanted);
        for send in &sends {
            sender.answered(at(ms), send, outcome);
        }
        sends.iter().map(|s| s.gateway.port()).collect()
    }

    #[test]
    fn interest_goes_to_every_gateway_on_link_up_on_change_and_periodically() {
        let (mut s, news) = (sender(), wanting(&["news.weather"]));
        let taken = InterestSent::Taken;
        assert!(
            round(&mut s, 0, &BTreeSet::new(), &news, taken).is_empty(),
            "link down"
        );
        assert_eq!(round(&mut s, 10, &up(), &news, taken), [1, 2], "link up");
        assert_eq!(s.told(&name("a")), news.get(&name("a")));
        assert!(
            round(&mut s, 20, &up(), &news, taken).is_empty(),
            "unchanged"
        );
        let more = wanting(&["news.sport", "news.weather"]);
        assert_eq!(round(&mut s, 30, &up(), &more, taken), [1, 2], "changed");
        assert!(round(&mut s, 6_000, &up(), &more, taken).is_empty());
        assert_eq!(round(&mut s, 6_030, &up(), &more, taken), [1, 2], "resent");
        assert!(round(&mut s, 6_040, &BTreeSet::new(), &more, taken).is_empty());
        assert_eq!(
            round(&mut s, 6_050, &up(), &more, taken),
            [1, 2],
            "up again"
        );
        let none = BTreeMap::new();
        let withdrawn = s.poll(at(6_060), &up(), &none);
        let everything = BridgeInterest::everything();
        assert!(
            withdrawn.iter().all(|send| send.interest == everything) && withdrawn.len() == 2,
            "no longer ours to tell: everything, once: {withdrawn:?}"
        );
        assert_eq!(s.next_deadline(), None, "nothing falls due while not ours");
        for send in &withdrawn {
            s.answered(at(6_061), send, taken);
        }
        assert!(round(&mut s, 6_062, &up(), &none, taken).is_empty(), "once");
        assert_eq!(s.told(&name("a")), None);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(
            round(&mut s, 6_070, &up(), &more, taken),
            [1, 2],
            "ours again"
        );
    }

    /// A gateway that does not tell (not the forwarder, or its links down) has nothing that
    /// falls due: its task is not woken for it.
    #[test]
    fn nothing_falls_due_for_targets_that_are_not_ours() {
        let mut s = sender();
        let news = wanting(&["news.>"]);
        assert!(s.poll(at(0), &up(), &BTreeMap::new()).is_empty());
        assert_eq!(s.next_deadline(), None, "not the one that tells");
        assert!(s.poll(at(0), &BTreeSet::new(), &news).is_empty());
        assert_eq!(s.next_deadline(), None, "links down");
        assert_eq!(round(&mut s, 10, &up(), &news, InterestSent::Taken), [1, 2]);
        assert_eq!(s.next_deadline(), Some(at(6_010)), "the resend");
    }

    /// A send still out when the link goes down and up again is not overtaken by a second
    /// one; and when we stop telling while it is out, the withdrawal follows its answer.
    #[test]
    fn a_send_still_out_is_never_overtaken() {
        let (mut s, news) = (sender(), wanting(&["news.weather"]));
        let first = s.poll(at(0), &up(), &news);
        assert_eq!(first.len(), 2);
        assert!(s.poll(at(10), &BTreeSet::new(), &news).is_empty(), "down");
        assert!(
            s.poll(at(20), &up(), &news).is_empty(),
            "up, the first still out"
        );
        for send in &first {
            s.answered(at(30), send, InterestSent::Taken);
        }
        assert_eq!(
            s.told(&name("a")),
            None,
            "taken before the reset: not counted"
        );
        let again = s.poll(at(40), &up(), &news);
        assert_eq!(again.len(), 2, "told again once nothing is out");

        assert!(
            s.poll(at(50), &up(), &BTreeMap::new()).is_empty(),
            "still out"
        );
        for send in &again {
            s.answered(at(60), send, InterestSent::Taken);
        }
        let withdrawn = s.poll(at(70), &up(), &BTreeMap::new());
        assert_eq!(withdrawn.len(), 2);
        assert!(withdrawn
            .iter()
            .all(|send| send.interest == BridgeInterest::everything()));
    }

    #[test]
    fn one_send_in_flight_per_gateway_retried_after_a_failure_and_slower_after_a_refusal() {
        let (mut s, news) = (sender(), wanting(&["news.>"]));
        let sends = s.poll(at(0), &up(), &news);
        assert_eq!(sends.len(), 2);
        assert!(s.poll(at(5), &up(), &news).is_empty(), "in flight");
        s.answered(at(10), &sends[0], InterestSent::Failed);
        s.answered(at(10), &sends[1], InterestSent::Refused);
        assert_eq!(s.next_deadline(), Some(at(1_010)));
        assert!(s.poll(at(1_000), &up(), &news).is_empty());
        let retried = round(&mut s, 1_010, &up(), &news, InterestSent::Taken);
        assert_eq!(
            retried,
            [1],
            "the failed one after `retry`, the refused one not yet"
        );
        assert_eq!(s.told(&name("a")), None, "gateway 2 has not taken it in");
        assert!(s.poll(at(6_009), &up(), &news).is_empty());
        assert_eq!(round(&mut s, 6_010, &up(), &news, InterestSent::Taken), [2]);
        assert_eq!(s.told(&name("a")), news.get(&name("a")));
    }

    #[test]
    fn before_any_interest_everything_crosses_after_it_only_what_it_wants() {
        let mut heard = HeardInterest::new(timers());
        let a = name("a");
        let (weather, sport) = (t("news.weather"), t("news.sport"));
        assert!(heard.wants(at(0), &a, &weather) && heard.wants(at(0), &a, &sport));
        heard.heard(at(0), &a, &["news.weather".into()]).unwrap();
        assert!(heard.wants(at(1), &a, &weather));
        assert!(!heard.wants(at(1), &a, &sport));
        assert!(
            heard.wants(at(1), &name("b"), &sport),
            "another link: nothing heard"
        );
        heard.heard(at(2), &a, &[]).unwrap();
        assert!(
            !heard.wants(at(3), &a, &weather),
            "an empty interest wants nothing"
        );
        assert!(
            heard.wants(at(20_002), &a, &sport),
            "expired: everything again"
        );
        heard.heard(at(30_000), &a, &[]).unwrap();
        heard.forget(&a);
        assert!(
            heard.wants(at(30_001), &a, &sport),
            "link down: everything again"
        );
    }

    #[test]
    fn an_unreadable_interest_is_refused_and_everything_crosses() {
        let mut heard = HeardInterest::new(timers());
        let a = name("a");
        heard.heard(at(0), &a, &[]).unwrap();
        let bad = heard.heard(at(1), &a, &["news.>.x".into()]);
        assert!(matches!(bad, Err(InterestError::Pattern { .. })));
        assert!(heard.wants(at(2), &a, &t("news.sport")));
        heard.heard(at(3), &a, &[]).unwrap();
        let huge = vec!["x".to_owned(); MAX_HEARD_PATTERNS + 1];
        let refused = heard.heard(at(4), &a, &huge);
        assert_eq!(
            refused,
            Err(InterestError::TooLarge(MAX_HEARD_PATTERNS + 1))
        );
        assert!(heard.wants(at(5), &a, &t("news.sport")));
    }

    #[test]
    fn an_older_gateway_cannot_decode_the_new_kind_and_the_others_keep_their_tags() {
        use crate::federation::wire::FederationRequest;
        let interest = FederationRequest::Interest(vec!["news.>".into()]);
        let bytes = postcard::to_stdvec(&interest).unwrap();
        assert_eq!(bytes[0], 6, "after Probe, Call, Bridge, Push, Transit, Via");
        let bridge = postcard::to_stdvec(&FederationRequest::Bridge(Vec::new())).unwrap();
        assert_eq!(bridge[0], 2);
        // What an older release meets: a tag past its last kind, which does not decode (the
        // engine answers `Refused`).
        assert!(postcard::from_bytes::<FederationRequest>(&[7, 0]).is_err());
    }
}
