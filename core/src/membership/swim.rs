//! The adapter through which foca talks to the rest of the core: its sends become effects, its
//! timers become effects (stretched by local health, suspicion timers per Lifeguard), and its
//! notifications are collected for the membership machine to act on after foca returns.

use std::time::Duration;

use crate::Channel;
use foca::{Notification, OwnedNotification, Timer};

use super::identity::MemberId;
use super::lifeguard::{LocalHealth, Suspicions};
use super::wire::{datagram_kind, tagged};
use super::MembershipTimer;
use crate::effects::{self, Outbox};
use crate::time::Instant;

pub(crate) struct SwimIo<'a> {
    pub me: MemberId,
    pub now: Instant,
    pub out: &'a mut Outbox,
    pub notes: &'a mut Vec<OwnedNotification<MemberId>>,
    pub health: &'a LocalHealth,
    pub suspicions: &'a mut Suspicions,
}

impl foca::Runtime<MemberId> for SwimIo<'_> {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        if self.me.holds_address_of(to.node_addr()) {
            return; // a previous life at our own address: see `membership::send`
        }
        let payload = tagged(datagram_kind::SWIM, data);
        self.out.send(to.node_addr(), Channel::Membership, payload);
    }

    fn submit_after(&mut self, timer: Timer<MemberId>, after: Duration) {
        let at = match &timer {
            Timer::ChangeSuspectToDown { .. } if fault_on!(SuspicionNeverExpires) => return,
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } => {
                let max = self.health.scale(after);
                self.suspicions
                    .arm(self.now, member_id, *incarnation, timer.clone(), max)
            }
            Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => {
                self.now + self.health.scale(after)
            }
            _ => self.now + after,
        };
        self.out
            .timer(at, effects::Timer::Membership(MembershipTimer::Swim(timer)));
    }
}
