//! Lifeguard's dogpiling, made active: when a suspicion starts, a few members chosen by a hash
//! check the suspect at once instead of waiting to probe it in their own turn.
//!
//! A suspicion's timeout shrinks only with independent confirmations ([`super::lifeguard`]),
//! and with random probing a confirmation comes when another member happens to probe the
//! suspect: on ten nodes that is seconds later, so a crashed member was declared only after
//! most of the maximum timeout. Here, the first report of a suspicion makes the
//! `suspicion_confirmations` members that rank highest for it (every member computes the same
//! ranking, so no coordination is needed) send the suspect the report directly — the buddy
//! system: a live suspect refutes at once and answers the checker — and wait a probe round
//! trip. A checker that heard no refutation reports its own failed check to everyone, which is
//! a confirmation like any other. A dead member collects its confirmations within one round
//! trip; a live one refutes to every checker, and no confirmation is sent.
//!
//! For as long as our own suspicion runs, we tell the suspect again every probe period
//! ([`Membership::retell`]): what we said when it started may all have been lost on links that
//! were cut then and have healed since.
//!
//! A stalled member still has the whole shrunken timeout plus the last call
//! ([`Membership::last_call`]) to wake up and refute, so the stall a profile tolerates is
//! roughly `probe_period + suspect_to_down_min + probe_rtt`.

use foca::Incarnation;
use xxhash_rust::xxh3::xxh3_64;

use super::{send, wire::SuspectReport, MemberId, MemberState, Membership, MembershipTimer};
use crate::effects::{self, Outbox};
use crate::time::Instant;
use crate::{Channel, NodeId};

impl Membership {
    /// A report about `report.member` arrived (or we made one): if this is the first we hear of
    /// this suspicion and we rank among its checkers, ask the suspect directly and look again
    /// after a probe round trip ([`Self::check_expired`]).
    pub(super) fn check_if_chosen(
        &mut self,
        now: Instant,
        report: &SuspectReport,
        out: &mut Outbox,
    ) {
        let suspect = report.member;
        if suspect.node == self.me.node || !self.holds_alive_at(suspect, report.incarnation) {
            return;
        }
        if !self.chosen_to_check(suspect, report.incarnation) {
            return;
        }
        if !self
            .suspicions
            .begin_check(now, suspect.node, report.incarnation)
        {
            return;
        }
        self.stats.suspect_checks += 1;
        self.tell_suspect(suspect, report.incarnation, out);
        let timer = MembershipTimer::Check(suspect, report.incarnation);
        out.timer(now + self.refute_wait(), effects::Timer::Membership(timer));
    }

    /// Tells `member` directly that it is suspected at `incarnation`: a live one refutes at once
    /// ([`Membership::refute`]), and the caller looks again after [`Self::refute_wait`].
    pub(super) fn tell_suspect(
        &self,
        member: MemberId,
        incarnation: Incarnation,
        out: &mut Outbox,
    ) {
        if let Some(payload) = self.suspect_report(member, incarnation) {
            send(
                self.me,
                out,
                member.node_addr(),
                Channel::Membership,
                payload,
            );
        }
    }

    /// Our suspicion of `suspect` at `incarnation` still runs: tell the suspect again, and
    /// again a probe period later ([`super::lifeguard::Suspicions::retell`] says why).
    pub(super) fn retell(
        &mut self,
        now: Instant,
        suspect: MemberId,
        incarnation: Incarnation,
        out: &mut Outbox,
    ) {
        if fault_on!(NoRetell) || !self.holds_alive_at(suspect, incarnation) {
            return;
        }
        if fault_on!(SuspectNeverToldAgain) {
            return;
        }
        let Some(next) = self.suspicions.retell(now, suspect.node, incarnation) else {
            return;
        };
        self.stats.suspects_retold += 1;
        self.tell_suspect(suspect, incarnation, out);
        let timer = MembershipTimer::Retell(suspect, incarnation);
        out.timer(next, effects::Timer::Membership(timer));
    }

    /// How long a member told it is suspected has to refute: a probe round trip, stretched by
    /// our local health.
    pub(super) fn refute_wait(&self) -> std::time::Duration {
        self.health.scale(self.config.probe_rtt)
    }

    /// Our check of `suspect` timed out: if it did not refute (its incarnation is unchanged and
    /// it is not declared yet), our failed check is a confirmation everyone should count.
    pub(super) fn check_expired(
        &mut self,
        now: Instant,
        suspect: MemberId,
        incarnation: Incarnation,
        out: &mut Outbox,
    ) {
        if !self.holds_alive_at(suspect, incarnation) {
            return;
        }
        self.stats.suspect_checks_unanswered += 1;
        self.report_to_everyone(suspect, incarnation, out);
        if let Some((at, timer)) =
            self.suspicions
                .confirm(now, suspect.node, incarnation, self.me.node)
        {
            out.timer(at, effects::Timer::Membership(MembershipTimer::Swim(timer)));
        }
    }

    /// Whether SWIM holds `member` alive or suspect at exactly `incarnation`: the suspicion is
    /// neither refuted nor concluded.
    pub(super) fn holds_alive_at(&self, member: MemberId, incarnation: Incarnation) -> bool {
        self.swim_entry(member)
            .is_some_and(|m| m.incarnation() == incarnation && m.state() != foca::State::Down)
    }

    /// Whether we are among the `suspicion_confirmations` live members (the suspect excepted)
    /// ranking highest for this suspicion. Whoever reported first is not excepted: excluding
    /// each report's sender would name a new checker with every confirmation.
    fn chosen_to_check(&self, suspect: MemberId, incarnation: Incarnation) -> bool {
        let wanted = self.config.suspicion_confirmations;
        let mine = checker_rank(suspect, incarnation, self.me.node);
        let ahead = self
            .view
            .values()
            .filter(|m| m.state == MemberState::Alive)
            .filter(|m| m.id != suspect.node)
            .filter(|m| checker_rank(suspect, incarnation, m.id) > mine)
            .take(wanted)
            .count();
        ahead < wanted
    }
}

/// Where `checker` ranks to check this suspicion: the same on every node, different for each
/// suspicion, so the work spreads over the cluster.
fn checker_rank(suspect: MemberId, incarnation: Incarnation, checker: NodeId) -> u64 {
    let mut bytes = [0u8; 48];
    bytes[..16].copy_from_slice(&suspect.node.as_u128().to_le_bytes());
    bytes[16..24].copy_from_slice(&suspect.generation.to_le_bytes());
    bytes[24..32].copy_from_slice(&u64::from(incarnation).to_le_bytes());
    bytes[32..].copy_from_slice(&checker.as_u128().to_le_bytes());
    xxh3_64(&bytes)
}
