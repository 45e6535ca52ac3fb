//! A crashed process, told apart from a stalled one by its host.
//!
//! SWIM cannot tell a crashed member from one that is stalled (a long pause, a swapped-out
//! process): both stop answering, so a profile that must survive a 2 s stall cannot declare a
//! crash sooner than that. The host of a crashed process can: while the host is up, a datagram
//! to the port the process had bound draws an ICMP "port unreachable" from it, which a stalled
//! process — its socket still bound — never causes. The transport reads those errors on its
//! membership socket and names the member they concern ([`crate::Input::PortClosed`]).
//!
//! An ICMP error is not authenticated, and a stale one can name a member's next life, so it is
//! only evidence: the member is told directly that it is suspected (the buddy system of
//! [`super::checks`]) and given a probe round trip to refute. A live member refutes at once and
//! nothing is declared; a member still silent is declared failed then, without waiting out the
//! suspicion timeout its stall tolerance needs. foca gossips the declaration like any other.
//! A host that is gone sends no ICMP; such a crash is found by probing, as before.
//!
//! The error comes only when someone sends the crashed member a datagram, and foca probes
//! members in a shuffled order of its own: with 9 others, the chance that nobody probes a given
//! member in a period is (8/9)⁹ ≈ 35 %, and 2.6 % for three periods running. So each member
//! also sends an empty datagram to the next alive member in node id order every probe period:
//! while views agree, every member whose predecessor in that order is alive gets at least one
//! datagram a period (of two neighbours crashed together, the second waits for probing).

use foca::{Incarnation, Member, State};

use bytes::Bytes;

use super::wire::datagram_kind;
use super::{send, MemberId, MemberState, Membership, MembershipTimer};
use crate::effects::{self, Outbox};
use crate::time::Instant;
use crate::Channel;
use crate::NodeId;

impl Membership {
    /// Sends the next alive member after us in node id order an empty datagram (see the
    /// module's docs).
    pub(super) fn touch_successor(&mut self, out: &mut Outbox) {
        let Some(next) = self.successor() else {
            return;
        };
        let touch = Bytes::from_static(&[datagram_kind::TOUCH]);
        send(self.me, out, next, Channel::Membership, touch);
    }

    /// The next alive member after us in node id order, looked up again only when the view
    /// changed: in a formed cluster it stays the same for period after period, and each
    /// lookup descends the view's trees afresh, missing the cache at every level at N=1000.
    fn successor(&mut self) -> Option<crate::NodeAddr> {
        let key = (self.view.writes(), self.me.node);
        match self.successor_cache {
            Some((cached, next)) if cached == key => next,
            _ => {
                let next = self.view.alive_after(&self.me.node).map(|m| m.node_addr());
                self.successor_cache = Some((key, next));
                next
            }
        }
    }

    /// The host at `node`'s address said nothing listens on its membership port. If we hold
    /// the member alive, ask it to refute and look again after a probe round trip
    /// (`closed_check_expired`); a member already being checked is left to that check.
    pub fn port_closed(&mut self, now: Instant, node: NodeId, out: &mut Outbox) {
        if self.left {
            return; // we judge nobody after leaving (and run no timer to look again)
        }
        let Some((member, incarnation)) = self.alive_life_of(node) else {
            return;
        };
        if fault_on!(ClosedPortTrusted) {
            self.stats.closed_port_checks += 1;
            return self.declare_closed(now, member, incarnation, out);
        }
        if !self.closed_checks.insert(member) {
            return;
        }
        self.stats.closed_port_checks += 1;
        self.tell_suspect(member, incarnation, out);
        let timer = MembershipTimer::ClosedPort(member, incarnation);
        out.timer(now + self.refute_wait(), effects::Timer::Membership(timer));
    }

    /// The check a closed port started is over: a member that neither refuted nor was declared
    /// meanwhile is declared failed now.
    pub(super) fn closed_check_expired(
        &mut self,
        now: Instant,
        member: MemberId,
        incarnation: Incarnation,
        out: &mut Outbox,
    ) {
        self.closed_checks.remove(&member);
        if !self.holds_alive_at(member, incarnation) {
            return;
        }
        self.declare_closed(now, member, incarnation, out);
    }

    fn declare_closed(
        &mut self,
        now: Instant,
        member: MemberId,
        incarnation: Incarnation,
        out: &mut Outbox,
    ) {
        self.stats.closed_port_declarations += 1;
        let down = Member::new(member, incarnation, State::Down);
        self.declaring(now, member, out, |swim, io| {
            swim.apply_many(std::iter::once(down), true, io)
        });
    }

    /// The life of `node` we hold alive (not ourselves), with SWIM's incarnation for it.
    fn alive_life_of(&self, node: NodeId) -> Option<(MemberId, Incarnation)> {
        if node == self.me.node {
            return None;
        }
        let view = self.view.get(&node)?;
        if view.state != MemberState::Alive {
            return None;
        }
        let member = view.member_id();
        let incarnation = self.swim_entry(member)?.incarnation();
        Some((member, incarnation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Effect;
    use crate::membership::tests::{drain, machine_with_three_peers, member, swim_learns};

    /// A closed port makes us ask the member directly and look again a probe round trip later;
    /// still unrefuted then, it is declared failed — long before the suspicion timeout a stall
    /// would need. More reports meanwhile start no second check.
    #[test]
    fn a_member_silent_after_its_port_closed_is_declared_at_the_check_s_end() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, crashed) = (Instant::ZERO, member(4, 1));
        m.port_closed(now, crashed.node, &mut out);
        m.port_closed(now, crashed.node, &mut out);
        let (sends, timers) = drain(&mut out);
        assert_eq!(sends, vec![(crashed.node_addr(), Channel::Membership)]);
        assert_eq!(timers, vec![MembershipTimer::ClosedPort(crashed, 0)]);
        assert_eq!(m.stats().closed_port_checks, 1);

        let later = now + m.config.probe_rtt;
        assert!(later < now + m.config.suspect_to_down_min);
        m.handle_timer(
            later,
            later,
            MembershipTimer::ClosedPort(crashed, 0),
            &mut out,
        );
        assert_eq!(
            m.member(crashed.node).map(|v| v.state),
            Some(MemberState::Failed)
        );
        assert_eq!(m.stats().closed_port_declarations, 1);
        let (sends, _) = drain(&mut out);
        assert!(
            sends.iter().any(|(to, _)| to.id != crashed.node),
            "the declaration is gossiped: {sends:?}"
        );
    }

    /// A member that refutes (a forged or stale ICMP error named a live one) is not declared;
    /// the next closed port checks it again.
    #[test]
    fn a_member_that_refutes_the_check_stays_alive() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, live) = (Instant::ZERO, member(3, 1));
        m.port_closed(now, live.node, &mut out);
        swim_learns(&mut m, now, Member::new(live, 1, State::Alive), &mut out);
        let _ = drain(&mut out);
        let later = now + m.config.probe_rtt;
        m.handle_timer(later, later, MembershipTimer::ClosedPort(live, 0), &mut out);
        assert_eq!(
            m.member(live.node).map(|v| v.state),
            Some(MemberState::Alive)
        );
        assert_eq!(m.stats().closed_port_declarations, 0);
        m.port_closed(later, live.node, &mut out);
        assert_eq!(m.stats().closed_port_checks, 2);
    }

    /// The members our probe-period timer touched (sent the empty datagram), then nothing is
    /// left in `out`. (foca refuses a probe timer with a stale token; the touch goes anyway.)
    fn touched(m: &mut Membership, at: Instant, out: &mut Outbox) -> Vec<NodeId> {
        let timer = MembershipTimer::Swim(foca::Timer::ProbeRandomMember(0));
        m.handle_timer(at, at, timer, out);
        let mut touched = Vec::new();
        while let Some(effect) = out.pop() {
            if let Effect::Send { to, payload, .. } = effect {
                if payload[..] == [datagram_kind::TOUCH] {
                    touched.push(to.id);
                }
            }
        }
        touched
    }

    /// Each probe period we touch the next alive member after us in node id order, whoever
    /// foca probes; a member no longer alive is passed over, and the order wraps around.
    #[test]
    fn each_probe_period_touches_the_next_alive_member() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let second = Instant::ZERO + m.config.probe_period;
        assert_eq!(touched(&mut m, second, &mut out), [NodeId::from_u128(2)]);

        let crashed = member(2, 1);
        m.port_closed(second, crashed.node, &mut out);
        let later = second + m.config.probe_rtt;
        let check = MembershipTimer::ClosedPort(crashed, 0);
        m.handle_timer(later, later, check, &mut out);
        let _ = drain(&mut out);
        let third = second + m.config.probe_period;
        assert_eq!(touched(&mut m, third, &mut out), [NodeId::from_u128(3)]);
        // A touch is no bad datagram to its receiver.
        let bad = m.stats().bad_datagrams;
        m.handle_datagram(third, &[datagram_kind::TOUCH], &mut out);
        assert_eq!(m.stats().bad_datagrams, bad);
    }

    /// Reports about ourselves or a node we do not hold alive change nothing.
    #[test]
    fn ourselves_and_unknown_nodes_are_not_checked() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        m.port_closed(Instant::ZERO, m.me().node, &mut out);
        m.port_closed(Instant::ZERO, NodeId::from_u128(99), &mut out);
        assert_eq!(drain(&mut out), (vec![], vec![]));
        assert_eq!(m.stats().closed_port_checks, 0);
    }
}
