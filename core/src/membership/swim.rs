//! The adapter through which foca talks to the rest of the core: its sends become effects, its
//! timers become effects (stretched by local health, suspicion timers per Lifeguard), and its
//! notifications are collected for the membership machine to act on after foca returns.

use std::time::Duration;

use crate::Channel;
use foca::{Member, Notification, OwnedNotification, State, Timer, TimerToken};

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
    /// Members that left lately ([`super::Membership::note_departure`]): their leave notice
    /// goes ahead of every SWIM packet, which may carry their departure as a bare "down".
    pub departures: &'a [super::Departure],
    pub periodic: &'a mut PeriodicTimers,
}

/// Which of foca's periodic timers (`PeriodicAnnounceDown`, `PeriodicGossip`) foca would take
/// up, seen from outside: the token of the last one of each it armed, while it stays connected
/// under that token. foca arms both on connecting and re-arms each from its handler only while
/// connected under the same token; it changes token only when it stops being connected, which
/// it reports (`Idle`, `Defunct`, or `Rejoin` after a renewal), and arms new ones when it
/// connects again.
///
/// Why: with nobody down, foca's announce-to-down handler re-arms the timer and then walks its
/// whole member list for down members, finding none — every probe period on every node, the
/// largest single cost of a formed cluster at N=1000; and with nothing to gossip, its gossip
/// handler only re-arms, waking every node five times a second for nothing. Knowing a timer
/// is live, the membership re-arms the first itself, exactly as foca would, and parks the
/// second until there is something to gossip (`Membership::resume_gossip`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeriodicTimers {
    announce_down: Option<TimerToken>,
    gossip: Option<TimerToken>,
}

impl PeriodicTimers {
    fn armed(&mut self, timer: &Timer<MemberId>) {
        match timer {
            Timer::PeriodicAnnounceDown(token) => self.announce_down = Some(*token),
            Timer::PeriodicGossip(token) => self.gossip = Some(*token),
            _ => {}
        }
    }

    fn noticed(&mut self, notification: &Notification<'_, MemberId>) {
        if matches!(
            notification,
            Notification::Idle | Notification::Defunct | Notification::Rejoin(_)
        ) {
            *self = Self::default();
        }
    }

    /// Whether foca, handed `timer` (one of the two periodic kinds), would re-arm it.
    pub(crate) fn live(&self, timer: &Timer<MemberId>) -> bool {
        match timer {
            Timer::PeriodicAnnounceDown(token) => self.announce_down == Some(*token),
            Timer::PeriodicGossip(token) => self.gossip == Some(*token),
            _ => false,
        }
    }
}

/// Whether the membership does anything with `notification` (`Membership::on_notification`).
/// foca reports every datagram sent and received; of those only a received ack counts (local
/// health). Copying the others' headers into the notes, to be dropped after, was ≈ 8 % of a
/// formed N=1000 cluster's time: a cold write per datagram. Whether an ack was addressed to
/// this life stays for `on_notification` to decide, after the notes before it (a rejoin) ran.
fn acted_on(notification: &Notification<'_, MemberId>) -> bool {
    match notification {
        Notification::DataSent(_) => false,
        Notification::DataReceived(header) => matches!(
            header.message,
            foca::Message::Ack(_) | foca::Message::ForwardedAck { .. }
        ),
        _ => true,
    }
}

impl foca::Runtime<MemberId> for SwimIo<'_> {
    fn notify(&mut self, notification: Notification<'_, MemberId>) {
        self.periodic.noticed(&notification);
        if acted_on(&notification) {
            self.notes.push(notification.to_owned());
        }
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        if self.me.is_past_life(to.node_addr()) {
            return; // see `membership::send`
        }
        for left in self.departures.iter().filter(|d| d.member.node != to.node) {
            let notice = left.notice.clone();
            self.out.send(to.node_addr(), Channel::Membership, notice);
        }
        let payload = tagged(datagram_kind::SWIM, data);
        self.out.send(to.node_addr(), Channel::Membership, payload);
    }

    fn submit_after(&mut self, timer: Timer<MemberId>, after: Duration) {
        self.periodic.armed(&timer);
        let at = match &timer {
            Timer::ChangeSuspectToDown { .. } if fault_on!(SuspicionNeverExpires) => return,
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } => {
                let max = self.health.scale(after);
                let (deadline, retell_at) =
                    self.suspicions
                        .arm(self.now, member_id, *incarnation, timer.clone(), max);
                let retell = MembershipTimer::Retell(*member_id, *incarnation);
                self.out
                    .timer(retell_at, effects::Timer::Membership(retell));
                deadline
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

/// The entries of `updates` that would change foca's state (`known`, its members) when applied: unknown members,
/// newer lives, and states that win SWIM's order of preference. Entries about our own node go
/// through unfiltered (foca refutes or renames them). Applying the rest would find each in
/// foca's member list by a linear scan and change nothing, so dropping them changes nothing.
pub(crate) fn news<'a>(
    known: impl Iterator<Item = &'a Member<MemberId>>,
    me: MemberId,
    updates: Vec<Member<MemberId>>,
) -> Vec<Member<MemberId>> {
    KNOWN.with_borrow_mut(|index| {
        index.clear();
        index.extend(known.map(|m| (m.id().node, m.clone())));
        updates
            .into_iter()
            .filter(|update| {
                update.id().node == me.node
                    || index
                        .get(&update.id().node)
                        .is_none_or(|known| would_change(known, update))
            })
            .collect()
    })
}

/// What a push-pull's sender holds, by node: its members and its metadata versions. Looked
/// up only, never iterated, so hash order cannot leak into behaviour.
pub(crate) struct Held {
    members: IdMap<Member<MemberId>>,
    versions: IdMap<u64>,
}

impl Held {
    /// Built in the maps the last one handed back ([`HELD`]), if any.
    pub(crate) fn of(
        members: &[Member<MemberId>],
        metadata: &[(crate::NodeId, super::Versioned)],
    ) -> Self {
        let (mut held_members, mut versions) = HELD
            .try_with(|maps| maps.take().unwrap_or_default())
            .unwrap_or_default();
        held_members.extend(members.iter().map(|m| (m.id().node, m.clone())));
        versions.extend(metadata.iter().map(|(n, v)| (*n, v.version)));
        Self {
            members: held_members,
            versions,
        }
    }

    /// Whether our entry `ours` would change the sender's foca state: by [`would_change`],
    /// the rule [`news`] applies at the sender's end. A node listed twice keeps its last
    /// entry; any entry the sender then lacks only costs a later exchange.
    pub(crate) fn lacks_member(&self, ours: &Member<MemberId>) -> bool {
        self.members
            .get(&ours.id().node)
            .is_none_or(|held| would_change(held, ours))
    }

    /// Whether the sender lacks `node`'s metadata at `version`.
    pub(crate) fn lacks_metadata(&self, node: crate::NodeId, version: u64) -> bool {
        self.versions.get(&node).is_none_or(|held| *held < version)
    }
}

impl Drop for Held {
    /// Hands the maps back, emptied, for the next push-pull answered on this thread.
    fn drop(&mut self) {
        self.members.clear();
        self.versions.clear();
        let maps = (
            std::mem::take(&mut self.members),
            std::mem::take(&mut self.versions),
        );
        // Gone at the thread's end: the maps are then freed here instead.
        let _ = HELD.try_with(|held| held.set(Some(maps)));
    }
}

thread_local! {
    /// [`Held`]'s maps, reused as [`KNOWN`] is: at a mass join every answered push-pull built
    /// two of them from nothing, allocating and faulting in room for the whole cluster each
    /// time. Looked up only, never iterated.
    static HELD: std::cell::Cell<Option<HeldMaps>> = const { std::cell::Cell::new(None) };

    /// [`news`]'s index of foca's members by node, reused between calls: built afresh for
    /// each push-pull, its allocation would cost more than the lookups it saves. Looked up
    /// only, never iterated, so its order cannot leak into behaviour.
    static KNOWN: std::cell::RefCell<IdMap<Member<MemberId>>> = std::cell::RefCell::default();
}

/// A map by node id for one push-pull's lookups ([`news`], [`Held`]).
type IdMap<V> = std::collections::HashMap<crate::NodeId, V, IdHashing>;

/// [`Held`]'s maps, kept empty between push-pulls.
type HeldMaps = (IdMap<Member<MemberId>>, IdMap<u64>);

/// xxh3 under a seed drawn from std's random hash keys, per map, as std's own maps are seeded:
/// far cheaper than SipHash on a 16-byte id (≈ 3 % of an N=1000 mass join: a lookup or insert
/// per member of every push-pull). xxh3 is not a keyed hash, so a sender choosing ids to
/// collide has an easier time than against SipHash; senders are authenticated members.
#[derive(Clone)]
pub(crate) struct IdHashing(u64);

impl Default for IdHashing {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Self(std::collections::hash_map::RandomState::new().hash_one(0u8))
    }
}

impl std::hash::BuildHasher for IdHashing {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

/// [`IdHashing`]'s hasher: each write chained into the seed.
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Whether foca would take `update` over `known` (same node): foca's own rules — a newer life
/// replaces an older one, an older life loses, and within one life SWIM's preference order
/// (section 4.2 of the paper) decides.
fn would_change(known: &Member<MemberId>, update: &Member<MemberId>) -> bool {
    if known.id() != update.id() {
        return known.id().generation <= update.id().generation;
    }
    let newer = update.incarnation() > known.incarnation();
    match (known.state(), update.state()) {
        (State::Down, _) => false,
        (_, State::Down) => true,
        (State::Alive, State::Suspect) => update.incarnation() >= known.incarnation(),
        _ => newer,
    }
}

#[cfg(test)]
mod tests {
    use super::super::swim_codec::SwimCodec;
    use super::*;
    use foca::{AccumulatingRuntime, Foca};
    use rand10::{rngs::StdRng, SeedableRng};

    fn id(node: u128, generation: u64) -> MemberId {
        MemberId {
            node: crate::NodeId::from_u128(node),
            addr: ([127, 0, 0, 1], 7000 + node as u16).into(),
            generation,
        }
    }

    fn member(generation: u64, incarnation: u16, state: State) -> Member<MemberId> {
        Member::new(id(2, generation), incarnation, state)
    }

    type TestSwim = Foca<MemberId, SwimCodec, StdRng, foca::NoCustomBroadcast>;
    type Step<'a> = dyn Fn(&mut TestSwim, &mut Tracked) + 'a;

    /// A foca runtime that tracks the periodic timers as `SwimIo` does.
    #[derive(Default)]
    struct Tracked {
        io: AccumulatingRuntime<MemberId>,
        periodic: PeriodicTimers,
    }

    impl foca::Runtime<MemberId> for Tracked {
        fn notify(&mut self, notification: Notification<'_, MemberId>) {
            self.periodic.noticed(&notification);
            self.io.notify(notification);
        }
        fn send_to(&mut self, to: MemberId, data: &[u8]) {
            self.io.send_to(to, data);
        }
        fn submit_after(&mut self, timer: Timer<MemberId>, after: Duration) {
            self.periodic.armed(&timer);
            self.io.submit_after(timer, after);
        }
    }

    /// Whether foca, handed `timer`, re-arms it; the tracker's guess is taken first, since
    /// foca's answer updates it.
    fn guess_and_rearm(
        swim: &mut TestSwim,
        rt: &mut Tracked,
        timer: Timer<MemberId>,
    ) -> (bool, bool) {
        let guess = rt.periodic.live(&timer);
        while rt.io.backlog() > 0 {
            let _ = (rt.io.to_send(), rt.io.to_schedule(), rt.io.to_notify());
        }
        swim.handle_timer(timer.clone(), &mut *rt).expect("a timer");
        let mut rearmed = false;
        while let Some((_, armed)) = rt.io.to_schedule() {
            rearmed |= armed == timer;
        }
        (guess, rearmed)
    }

    /// The tracker says a periodic timer is live exactly when foca would re-arm it, through
    /// every way foca stops and starts being connected: joining, losing its last member,
    /// rejoining under a renewed identity after being declared down, and leaving.
    #[test]
    fn periodic_timers_are_live_exactly_when_foca_rearms_them() {
        let me = id(1, 0);
        let mut config = foca::Config::simple();
        let every_second = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(1),
            num_members: std::num::NonZeroUsize::MIN,
        });
        config.periodic_announce_to_down_members = every_second.clone();
        config.periodic_gossip = every_second;
        let mut swim = Foca::new(me, config, StdRng::seed_from_u64(1), SwimCodec::default());
        let mut rt = Tracked::default();
        let alive = |node| Member::new(id(node, 0), 0, State::Alive);
        let down = |member: MemberId| Member::new(member, 0, State::Down);
        let steps: [&Step<'_>; 6] = [
            &|s, rt| {
                s.apply_many([alive(2)].into_iter(), true, rt)
                    .expect("join")
            },
            &|s, rt| {
                s.apply_many([down(id(2, 0))].into_iter(), true, rt)
                    .expect("alone")
            },
            &|s, rt| {
                s.apply_many([alive(3)].into_iter(), true, rt)
                    .expect("again")
            },
            &|s, rt| {
                s.apply_many([down(me)].into_iter(), true, rt)
                    .expect("renewed")
            },
            &|s, rt| {
                s.apply_many([alive(4)].into_iter(), true, rt)
                    .expect("back")
            },
            &|s, rt| s.leave_cluster(rt).expect("left"),
        ];
        let mut live_seen = 0;
        for (i, step) in steps.iter().enumerate() {
            step(&mut swim, &mut rt);
            for token in 0..8 {
                for timer in [
                    Timer::PeriodicAnnounceDown(token),
                    Timer::PeriodicGossip(token),
                ] {
                    let (guess, rearmed) = guess_and_rearm(&mut swim, &mut rt, timer.clone());
                    assert_eq!(guess, rearmed, "step {i}, {timer:?}");
                    live_seen += usize::from(rearmed);
                }
            }
        }
        assert!(live_seen >= 6, "each connected stretch had live timers");
    }

    /// `news` keeps exactly the updates that change foca's state, for every pairing of a
    /// known entry and an update across lives, incarnations and states.
    #[test]
    fn news_keeps_exactly_what_foca_would_change() {
        let me = id(1, 0);
        let states = [State::Alive, State::Suspect, State::Down];
        let mut entries = Vec::new();
        for generation in 0..3 {
            for incarnation in 0..3 {
                for state in states {
                    entries.push(member(generation, incarnation, state));
                }
            }
        }
        for known in &entries {
            for update in &entries {
                let mut swim = Foca::new(
                    me,
                    foca::Config::simple(),
                    StdRng::seed_from_u64(1),
                    SwimCodec::default(),
                );
                let mut io = AccumulatingRuntime::default();
                swim.apply_many([known.clone()].into_iter(), false, &mut io)
                    .expect("the known entry");
                let before: Vec<_> = swim.iter_membership_state().cloned().collect();
                let kept = news(before.iter(), me, vec![update.clone()]);
                swim.apply_many([update.clone()].into_iter(), false, &mut io)
                    .expect("the update");
                let after: Vec<_> = swim.iter_membership_state().cloned().collect();
                assert_eq!(
                    !kept.is_empty(),
                    before != after,
                    "known {known:?}, update {update:?}"
                );
            }
        }
    }
}
