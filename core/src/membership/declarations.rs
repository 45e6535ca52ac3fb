//! A declaration we make is told directly to every live member, not only gossiped.
//!
//! foca arms a suspicion timer only at a member whose own probe of the suspect failed; the
//! others hear of the suspicion (reports, gossip) and wait for the declaration's gossip. Each
//! declarer spends its `max_transmissions` of the Down update on members picked at random,
//! and after a mass crash and a cut most of them are crashed or across the cut: chaos, 32
//! nodes, seed 81, n25 heard of n11's suspicion from six reporters, every other member of its
//! side declared n11 by 18.0 s, and of 26 copies of the news that reached its side none
//! reached n25, which found the crash by its own probe 11.8 s after it.
//!
//! So when our suspicion timer (or a closed port's check) declares a member, we send a
//! [`DeclaredNotice`] to every live member but the declared one, and a receiver applies it
//! as the Down update SWIM would have gossiped. It judges nothing itself: no timer, no call
//! to the suspect, so loss cannot turn it into a declaration of its own (a fallback timer at
//! every hearer did, 53376da: chaos 32 nodes seed 96). A receiver is stricter than gossip,
//! where a Down wins over any incarnation: a notice about an incarnation older than the one
//! it holds (the member refuted since), about a life it does not hold active, or from a
//! declarer it does not hold alive teaches it nothing.
//!
//! A notice is told twice, the second time a probe period after the first, while we still hold
//! the life down at that incarnation: told once, a notice lost on the way left its receiver to
//! gossip, and after a mass crash gossip is slowest just when a notice is needed (300 nodes, 40
//! crashed and a cut 1.5 s later, 3 % loss: the Down update of an early declaration waits
//! behind hundreds of newer ones in every member's gossip, and a member whose notice was lost
//! learnt the crash 13.4 s after it — `sim/scenarios/mass-crash-cut.toml`).
//!
//! Cost: per telling, one datagram per declarer to each of the other live members (the
//! declared one left out), as a suspect report (64 bytes before sealing, against a report's
//! 52). Only a member whose timer fires while it still holds the suspect active declares; the
//! first notice reaches the others' SWIM within a round trip, and their timers then find the
//! member down and send nothing. Counted in `foundation sim --scenario chaos --nodes 32 --seeds
//! 1..150`: 12,105 declarations told (before the second telling) for 1,329 crashes, members
//! declared while cut off or stalled included.

use foca::{Incarnation, Member, State};

use super::swim::SwimIo;
use super::wire::{datagram_kind, tagged, DeclaredNotice};
use super::{MemberId, MemberState, Membership, MembershipTimer, Swim};
use crate::effects::Outbox;
use crate::time::Instant;

impl Membership {
    /// Hands foca a step of ours that may declare `member` failed (its suspicion timer, a
    /// closed port's check); if it did, every live member is told.
    pub(super) fn declaring(
        &mut self,
        now: Instant,
        member: MemberId,
        out: &mut Outbox,
        call: impl FnOnce(&mut Swim, SwimIo<'_>) -> Result<(), foca::Error>,
    ) {
        let was_active = self.swim_entry(member).is_some_and(is_active);
        self.drive(now, out, call);
        if let Some(incarnation) = self.down_at(member).filter(|_| was_active) {
            self.tell_declared(now, member, incarnation, out);
        }
    }

    fn tell_declared(
        &mut self,
        now: Instant,
        member: MemberId,
        incarnation: Incarnation,
        out: &mut Outbox,
    ) {
        if self.send_declared(member, incarnation, out) {
            self.stats.declarations_told += 1;
            let again = MembershipTimer::RetellDeclared(member, incarnation);
            self.arm(now, out, again, self.config.probe_period);
        }
    }

    /// A probe period after we told our declaration of `member` at `incarnation`: told once
    /// more, unless the life is no longer down at that incarnation with us (a later
    /// declaration is its declarer's to tell; a reaped life is old news).
    pub(super) fn retell_declared(
        &mut self,
        member: MemberId,
        incarnation: Incarnation,
        out: &mut Outbox,
    ) {
        let still_down = self.down_at(member) == Some(incarnation);
        if still_down && self.send_declared(member, incarnation, out) {
            self.stats.declarations_retold += 1;
        }
    }

    /// Sends the notice of our declaration to every live member but the declared one; false
    /// if there was none.
    fn send_declared(&self, member: MemberId, incarnation: Incarnation, out: &mut Outbox) -> bool {
        let notice = DeclaredNotice {
            declarer: self.me,
            member,
            incarnation,
        };
        let Ok(body) = postcard::to_stdvec(&notice) else {
            return false;
        };
        let payload = tagged(datagram_kind::DECLARED, &body);
        self.send_to_alive_but(member.node, &payload, out) > 0
    }

    /// A member told us it declared `notice.member` failed.
    pub(super) fn handle_declared(
        &mut self,
        now: Instant,
        notice: DeclaredNotice,
        out: &mut Outbox,
    ) {
        if !self.declarer_alive(&notice) {
            self.stats.declarations_refused += 1;
            return;
        }
        if notice.member == self.me {
            // What SWIM does with gossip of our own failure: renew our identity and rejoin.
            let down = Member::new(self.me, notice.incarnation, State::Down);
            return self.drive(now, out, |swim, io| {
                swim.apply_many(std::iter::once(down), true, io)
            });
        }
        if !self.holds_active_at_or_before(&notice) {
            self.stats.declarations_stale += 1;
            return;
        }
        self.stats.declarations_heard += 1;
        let down = Member::new(notice.member, notice.incarnation, State::Down);
        // Gossiped on, as the same update learnt from SWIM would be.
        self.drive(now, out, |swim, io| {
            swim.apply_many(std::iter::once(down), true, io)
        });
    }

    /// The incarnation at which SWIM holds `member`'s life down, if it does.
    fn down_at(&self, member: MemberId) -> Option<Incarnation> {
        self.swim_entry(member)
            .filter(|m| m.state() == State::Down)
            .map(Member::incarnation)
    }

    /// Whether the declarer is another member, which we hold alive in the life it sends from.
    fn declarer_alive(&self, notice: &DeclaredNotice) -> bool {
        let declarer = notice.declarer;
        declarer.node != notice.member.node
            && declarer.node != self.me.node
            && self.view.get(&declarer.node).is_some_and(|v| {
                v.state == MemberState::Alive && v.generation == declarer.generation
            })
    }

    /// Whether we hold the declared life active, at the notice's incarnation or an earlier one
    /// (foca keeps only the newest life of a node, so a notice about an earlier life finds no
    /// active entry and teaches nothing).
    fn holds_active_at_or_before(&self, notice: &DeclaredNotice) -> bool {
        self.swim_entry(notice.member)
            .filter(|m| is_active(m))
            .is_some_and(|m| m.incarnation() <= notice.incarnation)
    }
}

fn is_active(member: &Member<MemberId>) -> bool {
    member.state() != State::Down
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Effect;
    use crate::membership::tests::{
        drain, machine_with_three_peers, member, report_at, suspected_by_our_probe, swim_learns,
    };
    use crate::membership::MembershipTimer;
    use crate::NodeAddr;
    use std::time::Duration;

    /// The notices sent so far, with where each went; everything else is drained.
    fn notices(out: &mut Outbox) -> Vec<(NodeAddr, DeclaredNotice)> {
        let mut found = Vec::new();
        while let Some(effect) = out.pop() {
            let Effect::Send { to, payload, .. } = effect else {
                continue;
            };
            if let Some((&datagram_kind::DECLARED, body)) = payload.split_first() {
                found.push((to, postcard::from_bytes(body).expect("a notice")));
            }
        }
        let _ = drain(out);
        found
    }

    /// `declarer` declared `member` failed at `incarnation`, as a datagram.
    fn notice(declarer: MemberId, member: MemberId, incarnation: Incarnation) -> Vec<u8> {
        let notice = DeclaredNotice {
            declarer,
            member,
            incarnation,
        };
        tagged(
            datagram_kind::DECLARED,
            &postcard::to_stdvec(&notice).unwrap(),
        )
        .to_vec()
    }

    fn state_of(m: &Membership, node: MemberId) -> Option<MemberState> {
        m.member(node.node).map(|v| v.state)
    }

    /// A machine with three peers, its probe of member 4 failed and its timer for it fired
    /// once (the last call made): the machine, the suspect, the timer and when it fired.
    fn at_our_last_call(
        out: &mut Outbox,
    ) -> (Membership, MemberId, foca::Timer<MemberId>, Instant) {
        let mut m = machine_with_three_peers(out);
        let suspect = member(4, 1);
        let (at, timer) = suspected_by_our_probe(&mut m, out, suspect);
        m.handle_timer(at, at, MembershipTimer::Swim(timer.clone()), out);
        (m, suspect, timer, at)
    }

    /// Member 4's port reported closed at time zero (what that sent is drained): the member,
    /// when its check ends, and the check's timer.
    fn closed_port_check(
        m: &mut Membership,
        out: &mut Outbox,
    ) -> (MemberId, Instant, MembershipTimer) {
        let crashed = member(4, 1);
        m.port_closed(Instant::ZERO, crashed.node, out);
        let _ = drain(out);
        let check = MembershipTimer::ClosedPort(crashed, 0);
        (crashed, Instant::ZERO + m.config.probe_rtt, check)
    }

    /// Our timer declares the suspect after its last call: every live member but the suspect
    /// is told, once; a copy of the timer (armed by another failed probe) tells nobody again.
    #[test]
    fn our_declaration_is_told_to_every_live_member_but_the_declared_one() {
        let mut out = Outbox::default();
        let (mut m, suspect, timer, at) = at_our_last_call(&mut out);
        assert_eq!(notices(&mut out), vec![], "the last call declares nothing");

        let answer_by = at + m.refute_wait();
        m.handle_timer(
            answer_by,
            answer_by,
            MembershipTimer::Swim(timer.clone()),
            &mut out,
        );
        assert_eq!(state_of(&m, suspect), Some(MemberState::Failed));
        let told = DeclaredNotice {
            declarer: m.me(),
            member: suspect,
            incarnation: 0,
        };
        let expected: Vec<_> = [2, 3]
            .map(|n| (member(n, 1).node_addr(), told.clone()))
            .into();
        assert_eq!(notices(&mut out), expected);
        assert_eq!(m.stats().declarations_told, 1);

        m.handle_timer(answer_by, answer_by, MembershipTimer::Swim(timer), &mut out);
        assert_eq!(notices(&mut out), vec![], "declared already");
    }

    /// A probe period after our declaration we tell it again, to every live member but the
    /// declared one: a notice lost on the way left its receiver to gossip. A life no longer
    /// down at the declared incarnation by then (here: back in a new life) is not told again.
    #[test]
    fn our_declaration_is_told_again_a_probe_period_later_while_it_stands() {
        let mut out = Outbox::default();
        let (mut m, suspect, timer, at) = at_our_last_call(&mut out);
        let _ = drain(&mut out);
        let answer_by = at + m.refute_wait();
        m.handle_timer(answer_by, answer_by, MembershipTimer::Swim(timer), &mut out);
        let (_, timers) = drain(&mut out);
        let again = MembershipTimer::RetellDeclared(suspect, 0);
        assert!(timers.contains(&again), "{timers:?}");

        let later = answer_by + m.config.probe_period;
        m.handle_timer(later, later, again.clone(), &mut out);
        let told: Vec<_> = notices(&mut out).into_iter().map(|(to, _)| to).collect();
        assert_eq!(told, [2, 3].map(|n| member(n, 1).node_addr()));
        assert_eq!(m.stats().declarations_retold, 1);

        let renewed = member(4, 2);
        swim_learns(
            &mut m,
            later,
            Member::new(renewed, 0, State::Alive),
            &mut out,
        );
        let _ = drain(&mut out);
        m.handle_timer(later, later, again, &mut out);
        assert_eq!(notices(&mut out), vec![], "the life came back");
        assert_eq!(m.stats().declarations_retold, 1);
    }

    /// Chaos, 32 nodes, seed 81: n25 heard of n11's suspicion from six reporters but, with no
    /// failed probe of its own, ran no timer; the declaration's gossip, spent on crashed
    /// members and members across a cut, never reached it, and it found the crash by its own
    /// probe 11.8 s after it. A declarer's notice now brings the declaration.
    #[test]
    fn a_suspicion_heard_of_is_declared_by_a_declarers_notice() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (start, suspect) = (Instant::ZERO + Duration::from_secs(1), member(4, 1));
        m.handle_datagram(start, &report_at(2, suspect, 0), &mut out);
        m.handle_datagram(start, &report_at(3, suspect, 0), &mut out);
        let declared = start + m.config.suspect_to_down_min;
        m.handle_datagram(declared, &notice(member(2, 1), suspect, 0), &mut out);
        assert_eq!(state_of(&m, suspect), Some(MemberState::Failed));
        assert_eq!(m.stats().declarations_heard, 1);
        assert_eq!(notices(&mut out), vec![], "a hearer tells nobody");
    }

    /// A notice is read more strictly than SWIM's gossip, where a Down wins over any
    /// incarnation: about an incarnation the member has refuted since, about a life we do not
    /// hold, from a declarer we do not hold alive in that life (even about us), or from the
    /// declared member itself, it teaches nothing; a cut one is counted as bad.
    #[test]
    fn a_notice_about_a_refuted_or_other_life_or_from_a_stranger_teaches_nothing() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, suspect) = (Instant::ZERO, member(4, 1));
        swim_learns(&mut m, now, Member::new(suspect, 1, State::Alive), &mut out);
        let declared_at_one = notice(member(2, 1), suspect, 1);
        for datagram in [
            notice(member(2, 1), suspect, 0),
            notice(member(2, 1), member(4, 0), 5),
            notice(member(2, 0), suspect, 1),
            notice(member(9, 1), suspect, 1),
            notice(suspect, suspect, 1),
            notice(member(9, 1), m.me(), 0),
            declared_at_one[..declared_at_one.len() - 2].to_vec(),
        ] {
            m.handle_datagram(now, &datagram, &mut out);
        }
        assert_eq!(state_of(&m, suspect), Some(MemberState::Alive));
        assert_eq!(m.me(), member(1, 1), "a stranger's word does not renew us");
        assert_eq!(m.stats().declarations_heard, 0);
        assert_eq!(
            m.stats().declarations_stale,
            2,
            "a refuted incarnation, a life not held"
        );
        assert_eq!(
            m.stats().declarations_refused,
            4,
            "declarers not alive here, or itself"
        );
        assert_eq!(m.stats().bad_datagrams, 1, "the cut notice");

        m.handle_datagram(now, &declared_at_one, &mut out);
        assert_eq!(
            state_of(&m, suspect),
            Some(MemberState::Failed),
            "the same notice whole, at the incarnation held, declares"
        );
    }

    /// A notice that names our own life does what SWIM's gossip of our failure does: we renew
    /// our identity. Nobody else is declared.
    #[test]
    fn a_notice_naming_us_renews_our_life() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let me = m.me();
        m.handle_datagram(Instant::ZERO, &notice(member(2, 1), me, 0), &mut out);
        assert!(m.me().generation > me.generation, "{:?}", m.me());
        for peer in [2, 3, 4] {
            assert_eq!(state_of(&m, member(peer, 1)), Some(MemberState::Alive));
        }
        assert_eq!(notices(&mut out), vec![]);
    }

    /// A closed port's check declares too, and tells every live member once: a second closed
    /// port reported for the member already down tells nobody again.
    #[test]
    fn a_closed_port_declaration_is_told_once() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (crashed, later, check) = closed_port_check(&mut m, &mut out);
        m.handle_timer(later, later, check.clone(), &mut out);
        assert_eq!(notices(&mut out).len(), 2, "members 2 and 3");
        m.port_closed(later, crashed.node, &mut out);
        m.handle_timer(later, later, check, &mut out);
        assert_eq!(notices(&mut out), vec![]);
        assert_eq!(m.stats().declarations_told, 1);
    }

    /// With no other live member, a declaration tells nobody and is not counted as told.
    #[test]
    fn a_declaration_told_to_nobody_is_not_counted() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        for n in [2, 3] {
            swim_learns(&mut m, Instant::ZERO, Member::down(member(n, 1)), &mut out);
        }
        let _ = drain(&mut out);
        let (crashed, later, check) = closed_port_check(&mut m, &mut out);
        m.handle_timer(later, later, check, &mut out);
        assert_eq!(state_of(&m, crashed), Some(MemberState::Failed));
        assert_eq!(notices(&mut out), vec![]);
        assert_eq!(m.stats().declarations_told, 0, "told nobody");
    }

    /// A notice about a later incarnation than we hold declares (the member refuted a
    /// suspicion we never heard of, and was suspected and declared again); a second
    /// declarer's copy changes and counts nothing more.
    #[test]
    fn a_notice_about_a_later_incarnation_declares_once() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let suspect = member(4, 1);
        m.handle_datagram(Instant::ZERO, &notice(member(2, 1), suspect, 3), &mut out);
        assert_eq!(state_of(&m, suspect), Some(MemberState::Failed));
        m.handle_datagram(Instant::ZERO, &notice(member(3, 1), suspect, 3), &mut out);
        assert_eq!(m.stats().declarations_heard, 1);
        assert_eq!(
            m.stats().declarations_stale,
            1,
            "the second declarer's copy"
        );
    }

    /// A notice during our own last call ends our suspicion: the copy of our timer that would
    /// have declared, and the reminder, send nothing.
    #[test]
    fn a_notice_during_our_last_call_ends_our_suspicion_quietly() {
        let mut out = Outbox::default();
        let (mut m, suspect, timer, at) = at_our_last_call(&mut out);
        let _ = drain(&mut out);
        m.handle_datagram(at, &notice(member(2, 1), suspect, 0), &mut out);
        assert_eq!(state_of(&m, suspect), Some(MemberState::Failed));
        let _ = drain(&mut out);
        let answer_by = at + m.refute_wait();
        m.handle_timer(answer_by, answer_by, MembershipTimer::Swim(timer), &mut out);
        let retell = MembershipTimer::Retell(suspect, 0);
        m.handle_timer(answer_by, answer_by, retell, &mut out);
        assert_eq!(notices(&mut out), vec![]);
        assert_eq!(m.stats().declarations_told, 0);
    }
}
