//! Introductions held back: a member we learn from SWIM's gossip comes without its metadata,
//! which we used to ask for at once (an `Introduce` carrying ours, answered by its
//! `Metadata`). At a mass join nearly every such member's metadata reaches us anyway, in a
//! push-pull, within moments: measured at N=1000, two thirds of the answers found the
//! metadata already taken up, and five in six introduced members already held ours — 420,000
//! messages for 70,000 useful ones. So each introduction waits a probe period — the span in
//! which a node makes at most one eager push-pull, and others' push-pulls reach it — and is
//! sent only if the metadata has not come meanwhile.

use std::collections::VecDeque;

use crate::time::Instant;
use crate::NodeId;

/// Members to introduce ourselves to, each when its wait ends, in that order.
#[derive(Default)]
pub(super) struct Introductions {
    waiting: VecDeque<(Instant, NodeId)>,
}

impl Introductions {
    /// Queues an introduction to `node` for `due` (a wait after `now`), no earlier than any
    /// queued before. Returns when the caller must arm a timer: `due` when the queue was empty
    /// (one is armed exactly while the queue holds something), or the queue's head when it is
    /// overdue by more than a wait — its timer was refused (the core's timers are bounded), and
    /// without a new one nobody would be introduced again.
    pub(super) fn defer(&mut self, now: Instant, due: Instant, node: NodeId) -> Option<Instant> {
        let arm = match self.waiting.front() {
            None => Some(due),
            Some(&(head, _)) => (head + due.saturating_since(now) < now).then_some(now),
        };
        self.waiting.push_back((due, node));
        arm
    }

    /// The introductions due at `now`, taken out of the queue, and when the next is due (the
    /// caller arms a timer for it).
    pub(super) fn due(&mut self, now: Instant) -> (Vec<NodeId>, Option<Instant>) {
        let mut due = Vec::new();
        while let Some(&(at, node)) = self.waiting.front() {
            if at > now {
                break;
            }
            self.waiting.pop_front();
            due.push(node);
        }
        (due, self.waiting.front().map(|&(at, _)| at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A timer is asked for when the queue fills, and again for what is left after the due
    /// ones are taken, in order.
    #[test]
    fn due_introductions_come_out_in_order_with_the_next_deadline() {
        let at = |ms| Instant::ZERO + Duration::from_millis(ms);
        let node = NodeId::from_u128;
        let mut queue = Introductions::default();
        assert_eq!(queue.defer(at(0), at(10), node(1)), Some(at(10)));
        assert_eq!(queue.defer(at(2), at(12), node(2)), None);
        assert_eq!(queue.defer(at(10), at(20), node(3)), None);
        assert_eq!(queue.due(at(9)), (vec![], Some(at(10))));
        assert_eq!(queue.due(at(12)), (vec![node(1), node(2)], Some(at(20))));
        assert_eq!(queue.due(at(25)), (vec![node(3)], None));
        assert_eq!(
            queue.defer(at(20), at(30), node(4)),
            Some(at(30)),
            "empty again: arm"
        );
    }

    /// A head overdue by more than a wait means its timer never fired: the next introduction
    /// arms one for now, so the queue does not wait forever; a head merely due arms nothing.
    #[test]
    fn an_overdue_head_whose_timer_was_lost_is_armed_again() {
        let at = |ms| Instant::ZERO + Duration::from_millis(ms);
        let node = NodeId::from_u128;
        let mut queue = Introductions::default();
        assert_eq!(queue.defer(at(0), at(10), node(1)), Some(at(10)));
        assert_eq!(
            queue.defer(at(15), at(25), node(2)),
            None,
            "head due, not lost"
        );
        assert_eq!(queue.defer(at(21), at(31), node(3)), Some(at(21)));
        assert_eq!(queue.due(at(21)), (vec![node(1)], Some(at(25))));
    }
}
