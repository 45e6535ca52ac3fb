//! Lifeguard's two ideas on top of SWIM (Dadgar et al., 2018), as far as foca lets us apply them:
//!
//! - **Local health**: a node whose own probes keep failing is more likely slow itself than
//!   surrounded by dead peers, so it stretches its probe and suspicion timeouts by a multiplier
//!   instead of accusing healthy members.
//! - **Dynamic suspicion**: a suspicion starts with a long timeout that shrinks, logarithmically,
//!   as independent members report that their probes failed too. One slow path cannot get a
//!   healthy member declared failed quickly; many independent failures can.
//!
//! foca owns the suspicion itself; we only decide *when* its `ChangeSuspectToDown` timer fires.
//! Firing it early is safe: foca ignores the timer if the member refuted in the meantime.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::NodeId;
use foca::{Incarnation, Timer};

use super::identity::MemberId;
use crate::time::Instant;

/// The local-health score: 0 when healthy, up to `max - 1` when our own probes keep failing.
#[derive(Debug, Clone)]
pub(crate) struct LocalHealth {
    score: u32,
    max: u32,
}

impl LocalHealth {
    pub fn new(max: u32) -> Self {
        Self {
            score: 0,
            max: max.max(1),
        }
    }

    /// The factor our timeouts are stretched by: 1 when healthy.
    pub fn multiplier(&self) -> u32 {
        self.score + 1
    }

    pub fn scale(&self, duration: Duration) -> Duration {
        duration * self.multiplier()
    }

    pub fn probe_failed(&mut self) {
        self.score = (self.score + 1).min(self.max - 1);
    }

    pub fn probe_answered(&mut self) {
        self.score = self.score.saturating_sub(1);
    }
}

/// Bounds of the suspicion timeout, how many confirmations reach the minimum, and how often a
/// suspect of ours is told again that it is suspected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SuspicionPolicy {
    pub max: Duration,
    pub min: Duration,
    pub confirmations: usize,
    pub retell_every: Duration,
}

impl SuspicionPolicy {
    /// Lifeguard's timeout after `confirmations` independent reports:
    /// `max - (max - min) · log(c + 1) / log(k + 1)`, never below `min`.
    pub fn timeout(&self, max: Duration, confirmations: usize) -> Duration {
        let k = self.confirmations.max(1) as f64;
        let fraction = ((confirmations as f64 + 1.0).ln() / (k + 1.0).ln()).min(1.0);
        let min = self.min.min(max);
        max.saturating_sub((max - min).mul_f64(fraction)).max(min)
    }
}

#[derive(Debug)]
struct Suspicion {
    incarnation: Incarnation,
    reporters: BTreeSet<NodeId>,
    first_seen: Instant,
    armed: Option<Armed>,
    /// Whether we checked the suspect ourselves when the suspicion started (`super::checks`).
    checked: bool,
}

#[derive(Debug)]
struct Armed {
    timer: Timer<MemberId>,
    started: Instant,
    max: Duration,
    deadline: Instant,
    /// When the suspect is due to be told again ([`Suspicions::retell`]).
    retell_at: Instant,
    /// Whether the suspect was told directly before this timer declares it
    /// ([`Suspicions::last_call`]). It belongs to the timer, not to the suspicion: foca arms a
    /// new timer when its identity changes (a renewal voids every timer it set before), and a
    /// call made for a voided timer — often while we were cut off, so never heard — must not
    /// leave the live one to declare without a call of its own.
    called: bool,
}

/// Suspicions we know of, by member, with the reports that confirm them.
#[derive(Debug)]
pub(crate) struct Suspicions {
    policy: SuspicionPolicy,
    by_member: BTreeMap<NodeId, Suspicion>,
}

/// Reports about a member nobody here suspects are forgotten after this many maximum timeouts.
const STALE_REPORT_FACTOR: u32 = 4;

impl Suspicions {
    pub fn new(policy: SuspicionPolicy) -> Self {
        Self {
            policy,
            by_member: BTreeMap::new(),
        }
    }

    /// foca suspects `member` and asked for its `ChangeSuspectToDown` timer after `max`
    /// (already stretched by local health). Returns when the timer should fire, and when to
    /// tell the suspect again ([`Self::retell`]).
    pub fn arm(
        &mut self,
        now: Instant,
        member: &MemberId,
        incarnation: Incarnation,
        timer: Timer<MemberId>,
        max: Duration,
    ) -> (Instant, Instant) {
        let policy = self.policy;
        let entry = self.entry(now, member.node, incarnation);
        // foca arms the same timer again each time a probe of a suspect fails: once its last
        // call is made, that call and its deadline stand (a later deadline would only delay
        // the declaration of a member that did not answer).
        if let Some(armed) = entry
            .armed
            .as_ref()
            .filter(|a| a.called && a.timer == timer)
        {
            return (armed.deadline, armed.retell_at);
        }
        let deadline = now + policy.timeout(max, entry.reporters.len());
        let retell_at = now + policy.retell_every;
        entry.armed = Some(Armed {
            timer,
            started: now,
            max,
            deadline,
            retell_at,
            called: false,
        });
        (deadline, retell_at)
    }

    /// Another member's probe of `member` failed. Returns the timer to fire again, earlier, if
    /// this confirmation moved our deadline forward.
    pub fn confirm(
        &mut self,
        now: Instant,
        member: NodeId,
        incarnation: Incarnation,
        reporter: NodeId,
    ) -> Option<(Instant, Timer<MemberId>)> {
        let policy = self.policy;
        let entry = self.entry(now, member, incarnation);
        if !entry.reporters.insert(reporter) {
            return None;
        }
        let armed = entry.armed.as_mut()?;
        // After the last call, only the suspect's answer (or its silence) decides.
        if armed.called {
            return None;
        }
        let deadline = armed.started + policy.timeout(armed.max, entry.reporters.len());
        if deadline >= armed.deadline {
            return None;
        }
        armed.deadline = deadline;
        Some((deadline.max(now), armed.timer.clone()))
    }

    /// Lifeguard's buddy system, at the last moment: before our suspicion of `member` becomes a
    /// declaration by `timer`, the suspect is told directly, once, and given `wait` to refute.
    /// Returns when to fire the suspicion timer again (for a copy of the timer that fires while
    /// the call's wait runs, the end of that wait), or `None` to hand `timer` to foca now: the
    /// call was made and its wait is over, no suspicion of ours is armed, or `timer` is not the one
    /// armed (foca voided it when its identity changed, and ignores it) — such a timer spends
    /// nothing. A voided timer that is still the one armed (no probe failed since the change)
    /// makes the call and ends the reminders; the next failed probe arms a live timer, with a
    /// call and reminders of its own.
    pub fn last_call(
        &mut self,
        now: Instant,
        member: NodeId,
        timer: &Timer<MemberId>,
        wait: Duration,
    ) -> Option<Instant> {
        let armed = self.by_member.get_mut(&member)?.armed.as_mut()?;
        if armed.timer != *timer {
            return None;
        }
        // foca queued one timer per failed probe of the suspect, all equal: one that fires
        // before the call's wait is over (all of them at once after we stalled) waits for it.
        if std::mem::replace(&mut armed.called, true) {
            return (now < armed.deadline).then_some(armed.deadline);
        }
        armed.deadline = now + wait;
        Some(armed.deadline)
    }

    /// Lifeguard's buddy system for as long as our suspicion of `member` at `incarnation`
    /// runs: the suspect is told again every `retell_every`. Our first report, and the news
    /// gossiped after it, may all have been lost — sent while we were cut off, on links that
    /// have healed since — and a suspect that is never told cannot refute; if it then stalls
    /// briefly when our deadline comes, the last call finds it silent. Returns when to tell it
    /// next, or `None` if it is not due: the suspicion ended, moved to another incarnation,
    /// reached its last call, or was armed again (a later reminder is already waiting).
    pub fn retell(
        &mut self,
        now: Instant,
        member: NodeId,
        incarnation: Incarnation,
    ) -> Option<Instant> {
        let every = self.policy.retell_every;
        let suspicion = self.by_member.get_mut(&member)?;
        if suspicion.incarnation != incarnation {
            return None;
        }
        let armed = suspicion.armed.as_mut()?;
        if armed.called || now < armed.retell_at {
            return None;
        }
        armed.retell_at = now + every;
        Some(armed.retell_at)
    }

    /// We are about to check `member` ourselves at `incarnation`; false if we did already.
    pub fn begin_check(&mut self, now: Instant, member: NodeId, incarnation: Incarnation) -> bool {
        let entry = self.entry(now, member, incarnation);
        entry.incarnation == incarnation && !std::mem::replace(&mut entry.checked, true)
    }

    /// The member refuted, failed or left: its suspicion is over.
    pub fn clear(&mut self, member: NodeId) {
        self.by_member.remove(&member);
    }

    /// Drops reports about members nobody here suspects, so memory stays bounded.
    pub fn prune(&mut self, now: Instant) {
        let horizon = self.policy.max * STALE_REPORT_FACTOR;
        self.by_member
            .retain(|_, s| s.armed.is_some() || now.saturating_since(s.first_seen) < horizon);
    }

    fn entry(&mut self, now: Instant, member: NodeId, incarnation: Incarnation) -> &mut Suspicion {
        let entry = self
            .by_member
            .entry(member)
            .or_insert_with(|| Suspicion::new(incarnation, now));
        if incarnation > entry.incarnation {
            // A newer incarnation refuted everything said about the older one.
            *entry = Suspicion::new(incarnation, now);
        }
        entry
    }
}

impl Suspicion {
    fn new(incarnation: Incarnation, now: Instant) -> Self {
        Self {
            incarnation,
            reporters: BTreeSet::new(),
            first_seen: now,
            armed: None,
            checked: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> MemberId {
        MemberId {
            node: NodeId::from_u128(9),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 0,
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    /// foca's timer for a suspicion of `member` at incarnation 0, armed under `token`.
    fn suspicion_timer(member: MemberId, token: foca::TimerToken) -> Timer<MemberId> {
        Timer::ChangeSuspectToDown {
            member_id: member,
            incarnation: 0,
            token,
        }
    }

    /// No suspicion yet, the member to suspect, and the wait a last call gives it.
    fn fresh() -> (Suspicions, MemberId, Duration) {
        (
            Suspicions::new(policy()),
            member(),
            Duration::from_millis(200),
        )
    }

    fn policy() -> SuspicionPolicy {
        SuspicionPolicy {
            max: Duration::from_secs(4),
            min: Duration::from_secs(1),
            confirmations: 3,
            retell_every: Duration::from_secs(1),
        }
    }

    #[test]
    fn confirmations_shrink_the_timeout_down_to_the_minimum() {
        let p = policy();
        let max = p.max;
        assert_eq!(p.timeout(max, 0), max);
        let one = p.timeout(max, 1);
        assert!(one < max && one > p.min, "{one:?}");
        assert!(p.timeout(max, 2) < one);
        assert_eq!(p.timeout(max, 3), p.min);
        assert_eq!(p.timeout(max, 30), p.min);
    }

    #[test]
    fn local_health_stretches_timeouts_and_recovers() {
        let mut health = LocalHealth::new(4);
        for _ in 0..10 {
            health.probe_failed();
        }
        assert_eq!(health.multiplier(), 4);
        assert_eq!(
            health.scale(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        health.probe_answered();
        assert_eq!(health.multiplier(), 3);
    }

    #[test]
    fn a_confirmation_fires_the_suspicion_timer_earlier_once_per_reporter() {
        let mut suspicions = Suspicions::new(policy());
        let member = member();
        let timer = suspicion_timer(member, 0);
        let start = Instant::ZERO;
        assert_eq!(
            suspicions
                .arm(start, &member, 0, timer.clone(), Duration::from_secs(4))
                .0,
            start + Duration::from_secs(4)
        );
        let reporter = NodeId::from_u128(1);
        let (earlier, again) = suspicions.confirm(start, member.node, 0, reporter).unwrap();
        assert!(earlier < start + Duration::from_secs(4));
        assert_eq!(again, timer);
        assert_eq!(
            suspicions.confirm(start, member.node, 0, reporter),
            None,
            "duplicates do not count"
        );
    }

    #[test]
    fn reports_that_arrive_before_our_own_suspicion_count_when_it_starts() {
        let mut suspicions = Suspicions::new(policy());
        let member = member();
        for reporter in 1..=3 {
            assert_eq!(
                suspicions.confirm(Instant::ZERO, member.node, 0, NodeId::from_u128(reporter)),
                None
            );
        }
        let timer = suspicion_timer(member, 0);
        let (deadline, _) =
            suspicions.arm(Instant::ZERO, &member, 0, timer, Duration::from_secs(4));
        assert_eq!(deadline, Instant::ZERO + Duration::from_secs(1));
    }

    #[test]
    fn the_last_call_defers_the_declaration_once_and_confirmations_cannot_undercut_it() {
        let (mut suspicions, member, wait) = fresh();
        let timer = suspicion_timer(member, 0);
        let start = Instant::ZERO;
        assert_eq!(suspicions.last_call(start, member.node, &timer, wait), None);
        let (due, _) = suspicions.arm(start, &member, 0, timer.clone(), 4 * SECOND);
        assert_eq!(
            suspicions.last_call(due, member.node, &timer, wait),
            Some(due + wait)
        );
        for reporter in 1..=3 {
            let reporter = NodeId::from_u128(reporter);
            assert_eq!(suspicions.confirm(due, member.node, 0, reporter), None);
        }
        let later = due + wait;
        assert_eq!(suspicions.last_call(later, member.node, &timer, wait), None);
    }

    /// Chaos, 5 nodes, seed 798: a node stalled past its suspicion's deadline wakes with every
    /// copy of the timer foca queued (one per failed probe) due at once. The first made the
    /// last call; the second found it made and declared at the same instant, giving the
    /// suspect no time to refute: a false positive the other nodes repeated.
    #[test]
    fn copies_of_the_timer_due_together_wait_for_the_last_calls_answer() {
        let (mut suspicions, member, wait) = fresh();
        let timer = suspicion_timer(member, 0);
        let start = Instant::ZERO;
        suspicions.arm(start, &member, 0, timer.clone(), 4 * SECOND);
        suspicions.arm(start + SECOND, &member, 0, timer.clone(), 4 * SECOND);
        let woke = start + 7 * SECOND;
        let answer_by = woke + wait;
        let call = suspicions.last_call(woke, member.node, &timer, wait);
        assert_eq!(call, Some(answer_by));
        let copy = suspicions.last_call(woke, member.node, &timer, wait);
        assert_eq!(copy, Some(answer_by), "the copy waits for the answer");
        let (again, _) = suspicions.arm(woke, &member, 0, timer.clone(), 4 * SECOND);
        assert_eq!(
            again, answer_by,
            "a failed probe after the call keeps its deadline"
        );
        let declared = suspicions.last_call(answer_by, member.node, &timer, wait);
        assert_eq!(declared, None, "no answer: declared");
    }

    /// Chaos, 5 nodes, seed 117: a node cut off one way suspected a member, was declared failed
    /// and renewed its identity, which voided foca's timer; a failed probe armed a new one.
    /// The voided timer still fired here and took the last call (lost on the cut link) and
    /// stopped the reminders, so after the heal the live timer declared the member without a
    /// word to it: a false positive every other node repeated.
    #[test]
    fn a_timer_foca_voided_spends_neither_the_last_call_nor_the_reminders() {
        let (mut suspicions, member, wait) = fresh();
        let voided = suspicion_timer(member, 0);
        let live = suspicion_timer(member, 1);
        let start = Instant::ZERO;
        suspicions.arm(start, &member, 0, voided.clone(), 4 * SECOND);
        let (due, first) = suspicions.arm(start + SECOND, &member, 0, live.clone(), 4 * SECOND);
        let voided_due = start + 4 * SECOND;
        assert_eq!(
            suspicions.last_call(voided_due, member.node, &voided, wait),
            None,
            "handed to foca, which ignores it"
        );
        assert!(suspicions.retell(first, member.node, 0).is_some());
        assert_eq!(
            suspicions.last_call(due, member.node, &live, wait),
            Some(due + wait)
        );
        let again = suspicions.arm(due, &member, 0, live.clone(), 4 * SECOND).0;
        assert_eq!(
            suspicions.last_call(again, member.node, &live, wait),
            None,
            "the same timer armed again by another failed probe keeps its call"
        );
    }

    #[test]
    fn the_suspect_is_told_again_every_period_until_the_last_call() {
        let mut suspicions = Suspicions::new(policy());
        let member = member();
        let second = SECOND;
        assert_eq!(suspicions.retell(Instant::ZERO, member.node, 0), None);
        let timer = suspicion_timer(member, 0);
        let (due, first) = suspicions.arm(Instant::ZERO, &member, 0, timer.clone(), 4 * second);
        assert_eq!(first, Instant::ZERO + second);
        assert_eq!(
            suspicions.retell(first, member.node, 1),
            None,
            "another life"
        );
        assert_eq!(
            suspicions.retell(first, member.node, 0),
            Some(first + second)
        );
        assert_eq!(
            suspicions.retell(first, member.node, 0),
            None,
            "a second reminder for the same moment (armed twice) is dropped"
        );
        suspicions.last_call(due, member.node, &timer, Duration::from_millis(400));
        assert_eq!(suspicions.retell(due, member.node, 0), None, "called");
        suspicions.clear(member.node);
        suspicions.arm(due, &member, 0, timer, 4 * second);
        suspicions.clear(member.node);
        assert_eq!(
            suspicions.retell(due + second, member.node, 0),
            None,
            "refuted"
        );
    }
}
