//! Deliberately broken engine variants, for tests only: each [`FaultSwitch`] turns one small,
//! realistic bug on, so the simulator's tests can show that the invariant meant to catch that
//! kind of bug does fail (`foundation-sim`'s `tests/fault_switches.rs`; the table is in the
//! simulator's crate docs, "How we know the checks can fail").
//!
//! This module exists only with the `fault-injection` cargo feature, which only
//! `foundation-sim`'s dev-dependencies turn on: the `foundation` binary and every normal build
//! never compile it, and without it the engine's `fault_on!` is the constant `false`.
//!
//! A switch is on for the current thread only ([`engage`]), until its guard drops. A thread,
//! not the process: the test harness runs tests on parallel threads, and a simulated world runs
//! all its cores on the thread that steps it, so a switch reaches exactly the runs of the test
//! that engaged it (run them with `scenario::run` on that thread, not with `sweep`).

use std::cell::Cell;

/// One deliberately broken variant of the engine. Each names the bug it plants and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultSwitch {
    /// Membership keeps a member alive in its table after SWIM declared it down
    /// (`membership::Membership::member_down`).
    ViewKeepsDownMembers,
    /// foca's packet size forgets the two framing bytes (our kind byte and the transport's
    /// version byte), so a full packet is two bytes over the datagram limit (`swim_config`).
    PacketSizeWithoutFraming,
    /// Nobody re-contacts members it declared down, so the sides of a healed partition never
    /// merge (`swim_config`).
    NoAnnounceToDownMembers,
    /// Suspicion timers are never armed: a crashed member stays suspected, never failed
    /// (`membership::swim::SwimIo::submit_after`).
    SuspicionNeverExpires,
    /// Once a suspicion started, the suspecting node never tells the suspect again — no
    /// reminder every probe period, no last call —, so a suspicion that outlived a short
    /// partition becomes a declaration though the suspect is reachable again
    /// (`Membership::retell`, `Membership::last_call`).
    SuspectNeverToldAgain,
    /// A suspect is told it is suspected only when the suspicion starts and at the last call,
    /// not again every probe period while the suspicion runs: a suspicion made while cut off
    /// reaches its last call untold (`Membership::retell`).
    NoRetell,
    /// A closed port (an ICMP error, unauthenticated and possibly about an earlier life) is
    /// trusted at once: the member is declared failed without being asked to refute
    /// (`Membership::port_closed`).
    ClosedPortTrusted,
    /// A member told it is suspected renews its identity instead of refuting
    /// (`Membership::refute`).
    RenewWhenSuspected,
    /// A second leave notice of a member that already left panics (`Membership::member_leaving`).
    PanicOnRepeatedLeave,
    /// A leave notice that lands after SWIM's gossip of the departure (a recorded failure of
    /// that life) leaves the failure standing (`Membership::member_leaving`).
    LeaveNeverCorrectsFailure,
    /// The service registry's reaper never deletes a dead life's entries
    /// (`ephemeral::Ephemeral::reconcile`).
    ReaperNeverDeletes,
    /// The directory shows the entries of a node life membership holds failed or left, as long
    /// as membership still knows the node (`services::directory::update::visible_owner`).
    DirectoryShowsFailedLives,
    /// A digest is answered from one op past what the peer has seen, so a peer missing exactly
    /// one op never gets it (`replication::Keyspace::missing_for`).
    DigestAnswerOffByOne,
    /// An acknowledged-write request is acknowledged without applying the op
    /// (`replication::Replication::apply_ops`).
    AckWithoutApplying,
    /// A full state's progress is taken as seen but its data is not merged
    /// (`replication::Replication::merge_full_state`).
    SeenWithoutApplying,
    /// The hybrid logical clock does not advance past the timestamps of ops it receives
    /// (`replication::Replication::apply_remote`).
    HlcIgnoresReceive,
    /// A replica acknowledges an acked write as soon as it applied it, before the write is
    /// durable on its disk (`replication::Replication::ack_when_durable`), and
    /// `replication::Replication::durability` says `Now`, so the writer's own reply does not
    /// wait for its disk either.
    AckBeforeDurable,
    /// A restarted node ignores its stored clock ceiling and starts its clock from the stamps
    /// of its stored entries, as before the ceiling existed: a write it pushed and lost in the
    /// crash, stamped ahead by a peer's clock, is above its next writes
    /// (`replication::Replication::restore_clock`).
    RestartIgnoresClockCeiling,
    /// Departed origins are never retired (`core::Core::retire_departed`).
    NeverRetire,
    /// A placement registrar grants an instance another node holds
    /// (`placement::Registrar::claim`).
    PlacementGrantsHeld,
    /// A placement claimant takes a lease from a single grant, its own, instead of a quorum
    /// (`placement::quorum_size`).
    PlacementQuorumOfOne,
    /// Placement registrations never run out, so a crashed owner's instances are never freed
    /// (`placement::Registrar::claim`).
    PlacementRegistrationsNeverExpire,
    /// A node that expects to own an instance soon delivers a routed message to it at once
    /// instead of keeping it until the instance runs there, so a message routed during a
    /// handoff reaches an instance that does not run (`placement::Placement::take_routed`).
    PlacementRouteNoBuffer,
    /// The next owner drops a handed-over state instead of giving it to the instance it
    /// starts (`placement::Placement::resume_handed_over`).
    PlacementHandoffDropsState,
    /// A majority write counts its majority among the members visible now instead of the
    /// agreed membership, so a node alone on a minority side confirms it with one copy
    /// (`replication::Replication::write_acked`).
    MajorityOfVisible,
    /// The RPC router retries every call after a lost answer, as if all were idempotent, so a
    /// handler may run twice for a call that must run once (`services::router::judge`).
    RetryEveryLostCall,
    /// The RPC router gives every attempt the call's whole deadline instead of what is left of
    /// it, so a retried call overruns its deadline (`services::router::attempt_budget`).
    BudgetIgnoresDeadline,
    /// Reliable pub/sub never resends: a message lost with its connection stays lost
    /// (`services::reliable::Outgoing::due`).
    ReliableNeverResends,
    /// A reliable receiver takes a message past a gap as the next one, so what the gap held
    /// arrives later, out of order (`services::reliable::Incoming::accept`).
    ReliableAcceptsGaps,
    /// A pub/sub outbox always has room, so what waits for a slow or cut-off node grows without
    /// bound (`services::outbox::EventOutbox::has_room`).
    OutboxIgnoresBound,
    /// A plain (not reliable) message that joins a frame already waiting in a pub/sub outbox
    /// is taken but not written into it, so it is never sent
    /// (`services::outbox::EventOutbox::append`).
    OutboxDropsBatchedPlainMessages,
    /// An `lww` write another node replicated is shown without checking it against the
    /// variable's type (`vars::Vars::lww_entry`).
    VarsTakeOutOfRange,
    /// `lww` writes of other nodes are never taken up, so replicas keep their own writes
    /// (`vars::Vars::lww_entry`).
    VarsIgnorePeersLww,
    /// A draw beyond the rights a node holds reports success without spending anything, as if
    /// the node spent rights it does not hold (`vars::Vars::draw`).
    CounterDrawsUnbacked,
    /// The heir of a counter holder declared dead takes every right the dead life holds as it
    /// sees them, at once, without a majority fencing the dead life first, so a life that was
    /// only cut off keeps spending the same rights (`vars::Vars::member_down`).
    CounterReclaimUnfenced,
    /// A `cas` acceptor forgets what it promised and accepted before each message, so it
    /// answers every prepare and accept as if it had promised nothing — as a life restarted
    /// under the same identity from an old or lost disk would (`vars::Vars::cas_step`).
    AcceptorForgetsPromises,
    /// An agent supervisor never counts a restart as one too many, so a failing agent is
    /// restarted forever (`agents::supervisor::Supervisor::too_many_restarts`).
    SupervisorNeverGivesUp,
    /// The agent directory lists every entry of the `agents` keyspace, also those of node lives
    /// membership holds dead (`agents::directory::AgentDirectory::build`).
    AgentDirectoryShowsDeadLives,
    /// A caller's requests never expire: one whose answer is lost waits past its deadline,
    /// and one whose answer is late ends late (`agents::requests::Outstanding::expire`).
    AgentRequestsNeverExpire,
    /// A session driver credits each answer to the next participant instead of the one that
    /// answered (`agents::sessions::driver::Run::sender`).
    SessionAnswerFromWrongAgent,
    /// A session coordinator reports an outcome whose commit is uncertain (no majority, no
    /// answer) as committed (`agents::sessions::ledger::Landing::commit_state`).
    SessionUncertainAsCommitted,
    /// A session driver feeds a participant silent at a tatonnement's prices to the machine as
    /// zero excess demand, so silence can read as a cleared market
    /// (`agents::sessions::driver::Run::planted_silence`).
    SessionSilenceAsZeroDemand,
    /// A ledger takes an outcome on top of a record its session already wrote, or a later
    /// session's (`vars::outcome::apply`, `vars::Vars::commit_outcome`).
    OutcomeIgnoresSessionOrder,
    /// A debit larger than what a budget holds empties it instead of being refused
    /// (`vars::outcome::debit`).
    DebitSaturatesAtFloor,
    /// A partitioned cache's owner grants every `get_or_compute` of a missing key its own
    /// computation instead of making later callers wait for the first
    /// (`cache::Caches::owner_compute`).
    CacheFlightAdmitsAll,
    /// A reader keeps its near copy when the owner's invalidation reaches it
    /// (`cache::Caches::invalidated`).
    CacheNearIgnoresInvalidation,
    /// A partitioned cache's quorum rule grants on a majority now, without waiting a fence
    /// after the key came to this node (`cache::quorum::History::verdict`).
    CacheQuorumNoFence,
}

thread_local! {
    static ON: Cell<Option<FaultSwitch>> = const { Cell::new(None) };
}

/// Whether `switch` is on for this thread.
pub fn is_on(switch: FaultSwitch) -> bool {
    ON.with(|on| on.get() == Some(switch))
}

/// Turns `switch` on for this thread until the returned guard drops (then the previous switch,
/// if any, is back).
#[must_use = "the switch is off again as soon as the guard drops"]
pub fn engage(switch: FaultSwitch) -> Engaged {
    let previous = ON.with(|on| on.replace(Some(switch)));
    Engaged { previous }
}

/// Keeps a switch on; see [`engage`].
#[derive(Debug)]
pub struct Engaged {
    previous: Option<FaultSwitch>,
}

impl Drop for Engaged {
    fn drop(&mut self) {
        ON.with(|on| on.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_is_on_while_its_guard_lives_and_on_this_thread_only() {
        assert!(!is_on(FaultSwitch::NeverRetire));
        {
            let _on = engage(FaultSwitch::NeverRetire);
            assert!(fault_on!(NeverRetire));
            assert!(!fault_on!(HlcIgnoresReceive));
            let elsewhere = std::thread::spawn(|| is_on(FaultSwitch::NeverRetire));
            assert!(!elsewhere.join().expect("the thread ran"));
        }
        assert!(!is_on(FaultSwitch::NeverRetire));
    }
}
