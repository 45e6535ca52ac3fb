//! Foundation's deterministic simulator.
//!
//! Many real [`foundation_core::Core`]s — the same code that ships — run on one virtual clock
//! over a seeded, faulty network, all on one thread. A scenario says what happens when
//! (partitions, stalls, crashes, restarts, clock skew, a worse network); invariants are checked
//! as the run goes; and the whole run is reproduced, byte for byte, from its seed.
//!
//! - [`world::World`]: the cores, the clock, the event queue and the network.
//! - [`network`]: the network model (datagrams and QUIC-like streams).
//! - [`faults::Fault`]: what a scenario can do, writes to replicated keyspaces included
//!   ([`writes`]).
//! - [`scenario::Scenario`]: the builder, the TOML file format and the standard scenarios.
//! - [`invariants`]: what is checked, and the trait to add a check.
//! - [`stamps`]: the stamps of their own writes the nodes send, read off the wire for the
//!   invariants.
//! - [`services`]: what each node's application registers in the service registry.
//! - [`agents`]: supervised agents on every node (the core's supervisor machine), the agent
//!   directory, and `send`/`request` between agents over the simulated network.
//! - [`sessions`]: coordination sessions (auctions, votes) driven by the core's session driver
//!   between simulated agents, their outcomes committed to ledgers.
//! - [`storage`]: a simulated disk per node (`[storage]` in a scenario): batches the cores
//!   persist are written at once and synced a seeded latency later; a crash loses (or tears)
//!   what was not synced, a restart takes up what the disk kept, so acknowledged writes are
//!   checked across crashes of the whole cluster.
//! - [`federation`]: several clusters (one world each) in lockstep, their gateways' federation
//!   machines linked over a simulated WAN with its own latency, loss and cuts, and
//!   cross-cluster calls carried through them; in `foundation sim` and scenario files with
//!   `[[cluster]]` tables ([`federation::file`]).
//! - [`sweep`]: many seeds on every core.
//! - [`cli`]: the entry point behind `foundation sim`.
//!
//! # How we know the checks can fail
//!
//! A check that never fails proves nothing. For each invariant, a deliberately broken variant of
//! the engine — a `FaultSwitch` of `foundation_core::fault_switch`, hooked at one place in the
//! engine and compiled only into test builds (the engine's `fault-injection` feature, turned on
//! by this crate's dev-dependencies alone; `cargo tree -e features -p foundation` shows it
//! absent from the binary) — and a test in `tests/fault_switches.rs` that runs a scenario with
//! the switch on and sees the invariant fail, then with it off and sees the run pass
//! (`cargo test -p foundation-sim --test fault_switches -- --nocapture` prints each catch):
//!
//! | invariant | switch: the planted bug | test |
//! |---|---|---|
//! | `core-invariants` | `ViewKeepsDownMembers`: the member table keeps a member SWIM declared down | `core_invariants_catch_…` |
//! | `transport-limits` | `PacketSizeWithoutFraming`: foca's packets leave no room for our two framing bytes | `transport_limits_catch_…` (64 nodes) |
//! | `convergence` | `NoAnnounceToDownMembers`: nobody re-contacts members it declared down | `convergence_catches_…` |
//! | `crash-detection` | `SuspicionNeverExpires`: suspicion timers are dropped | `crash_detection_catches_…` (also `scenarios/stalled-observer-crash.toml`) |
//! | `crash-detection` (left, not failed) | `LeaveNeverCorrectsFailure`: a leave notice overtaken by SWIM's gossip of the departure leaves the failure standing | `crash_detection_catches_a_leave_…` (`scenarios/leave-notice-overtaken.toml`) |
//! | `no-false-positives` | `SuspectNeverToldAgain`: a suspicion that outlived a short partition is declared without telling the suspect again (no reminders, no last call) | `no_false_positives_catches_a_suspect_never_told_again_…` (`scenarios/short-partition.toml`) |
//! | `no-false-positives` (`stalls_survived`) | `NoRetell`: a suspect is not told again while the suspicion runs, so one made while cut off reaches its last call during a short stall | `no_false_positives_catches_a_suspicion_made_while_cut_off_…` (`scenarios/isolate-then-stall.toml`) |
//! | `no-false-positives` | `ClosedPortTrusted`: a member named by an ICMP port unreachable (forged here) is declared without being asked to refute | `no_false_positives_catches_a_forged_closed_port_…` (`scenarios/detect-process-crash.toml`) |
//! | `no-needless-renewal` | `RenewWhenSuspected`: a suspect renews its identity instead of refuting | `no_needless_renewal_catches_…` |
//! | `no-panics` | `PanicOnRepeatedLeave`: the second of a member's two leave notices panics | `no_panics_catches_…` |
//! | `registry-consistent` | `ReaperNeverDeletes`: dead lives' registry entries stay | `registry_consistent_catches_a_reaper_…` (`registry-partition`) |
//! | `registry-consistent` (never again) | `DirectoryShowsFailedLives`: the directory lists a life membership holds failed | `registry_consistent_catches_a_directory_…` (`scenarios/restart-through-declared-failed.toml`) |
//! | `replicas-converge` | `DigestAnswerOffByOne`: a digest is answered from one op too far | `replicas_converge_catches_…` (a gap only the op path repairs) |
//! | `acknowledged-writes-present` | `AckWithoutApplying`: an ack request is acknowledged, not applied | `acknowledged_writes_present_catches_…` |
//! | `acknowledged-writes-present` (storage) | `AckBeforeDurable`: replicas acknowledge, and writers answer, before the batch is synced | `acknowledged_writes_present_catches_acks_before_durable_…` (`whole-cluster-crash`) |
//! | `seen-backed-by-data` | `SeenWithoutApplying`: a full state's progress is taken, its data not merged | `seen_backed_by_data_catches_…` |
//! | `causal-order` | `HlcIgnoresReceive`: the clock does not move past received timestamps | `causal_order_catches_…` (`skewed-writes`) |
//! | `stamps-follow-lives` | `RestartIgnoresClockCeiling`: a restarted node starts its clock from its stored entries, not from its stored clock ceiling | `stamps_follow_lives_catches_…` (`scenarios/clock-ahead-restarts.toml`) |
//! | `departed-origins-retired` | `NeverRetire`: departed writers are never retired | `departed_origins_retired_catches_…` (`compaction`) |
//! | `one-owner` (placement) | `PlacementGrantsHeld`: a registrar grants an instance another node holds | `tests/placement.rs`: `one_owner_catches_…` |
//! | `no-minority-owner` (placement) | `PlacementQuorumOfOne`: a claimant takes a lease from its own grant alone | `tests/placement.rs`: `no_minority_owner_catches_…` |
//! | `owned-after-heal` (placement) | `PlacementRegistrationsNeverExpire`: a gone owner's registrations never run out | `tests/placement.rs`: `owned_after_heal_catches_…` (churn) |
//! | `routed-delivery` (placement) | `PlacementRouteNoBuffer`: a node about to run an instance delivers a routed message to it at once | `tests/placement.rs`: `routed_delivery_catches_…` |
//! | `handoff-state` (placement) | `PlacementHandoffDropsState`: the next owner drops the state it was handed | `tests/placement.rs`: `handoff_state_catches_…` |
//! | majority writes refused on a minority side | `MajorityOfVisible`: a majority write counts its majority among the visible members | `tests/majority_writes.rs`: `counting_the_visible_members_confirms_…` |
//! | `rpc-calls` (at most once) | `RetryEveryLostCall`: the router retries a call that is not idempotent after its answer was lost | `rpc_calls_catch_a_router_that_retries_…` (`rpc-partition`) |
//! | `pubsub-delivery` (reliable) | `ReliableNeverResends`: unacknowledged messages are never sent again | `pubsub_delivery_catches_reliable_…` (`pubsub-partition`) |
//! | `pubsub-delivery` (order) | `ReliableAcceptsGaps`: a receiver takes a message past a gap as the next | `pubsub_delivery_catches_a_receiver_that_skips_gaps` (`pubsub-partition`) |
//! | `pubsub-delivery` (bounds) | `OutboxIgnoresBound`: a publisher's outbox for a node always has room | `pubsub_delivery_catches_an_outbox_without_a_bound` (`pubsub-burst`) |
//! | `pubsub-delivery` (plain) | `OutboxDropsBatchedPlainMessages`: a plain message that joins a waiting frame is left out of it | `pubsub_delivery_catches_an_outbox_that_drops_batched_plain_messages` (`pubsub-burst`) |
//! | `rpc-calls` (deadline) | `BudgetIgnoresDeadline`: every attempt gets the call's whole deadline | `rpc_calls_catch_attempts_that_overrun_…` (`rpc-partition`) |
//! | variables: `cas` versions decided once, the same on every node that learns them | `AcceptorForgetsPromises`: an acceptor answers every prepare and accept as if it had promised nothing | `tests/vars.rs`, `can_fail::acceptors_that_forget_…` |
//! | variables: no value outside its type shown | `VarsTakeOutOfRange`: a replicated `lww` write is shown unchecked | `tests/vars.rs`, `can_fail::an_unchecked_remote_lww_value_is_seen` |
//! | variables: `lww` replicas converge | `VarsIgnorePeersLww`: other nodes' `lww` writes are not taken up | `tests/vars.rs`, `can_fail::replicas_that_ignore_…` |
//! | variables: counters spend at most initial + refills | `CounterDrawsUnbacked`: a draw beyond the rights held reports success | `tests/vars.rs`, `can_fail::draws_beyond_…` |
//! | variables: counters spend at most initial + refills, with dead lives' rights reclaimed | `CounterReclaimUnfenced`: an heir takes a dead life's rights without a majority fencing it | `tests/vars.rs`, `can_fail::an_unfenced_reclaim_…` |
//! | `supervisor-intensity` (agents) | `SupervisorNeverGivesUp`: the supervisor never counts a restart as one too many | `supervisor_intensity_catches_…` (`agents-partition`) |
//! | `agents-vanish` (agents) | `AgentDirectoryShowsDeadLives`: the agent directory lists dead lives' entries | `agents_vanish_catches_…` (`agents-crash`) |
//! | `agent-requests` (agents) | `AgentRequestsNeverExpire`: a caller's requests never expire | `agent_requests_catch_…` (`agents-partition`) |
//! | sessions: `one-outcome-per-session` | `OutcomeIgnoresSessionOrder`: a ledger takes an outcome over a record of the same or a later session | `tests/sessions_driven.rs`, `can_fail::a_ledger_that_ignores_…` |
//! | sessions: `within-budget` | `DebitSaturatesAtFloor`: a debit beyond the budget empties it instead of being refused | `tests/sessions_driven.rs`, `can_fail::a_debit_that_empties_…` |
//! | cache: `cache-single-flight` | `CacheFlightAdmitsAll`: a partitioned cache's owner grants every caller of a missing key its own computation | `tests/fault_switches.rs`, `cache_single_flight_catches_…` |
//! | cache: `cache-near-fresh` | `CacheNearIgnoresInvalidation`: a reader keeps its near copy when the owner's invalidation reaches it | `tests/fault_switches.rs`, `cache_near_fresh_catches_…` |
//! | cache: `cache-one-compute` | `CacheQuorumNoFence`: the quorum rule grants on a majority now, without the fence after a key came to its owner | `tests/fault_switches.rs`, `cache_one_compute_catches_…` |
//! | sessions: `matches-machine` | `SessionAnswerFromWrongAgent`: the driver credits an answer to the next participant | `tests/sessions_driven.rs`, `can_fail::answers_credited_to_…` |
//! | sessions: `silence-is-not-convergence` | `SessionSilenceAsZeroDemand`: a participant silent at a tatonnement's prices counts as zero excess demand | `tests/sessions_driven.rs`, `can_fail::silence_taken_as_…` |
//! | sessions: `no-minority-commit` | `SessionUncertainAsCommitted`: a commit without a majority is reported as committed | `tests/sessions_driven.rs`, `can_fail::an_uncertain_commit_…` |
//! | `federation-no-leak` | no switch: a gateway's machine handed an unexported service | `tests/federation.rs`, `the_leak_check_catches_…` |
//! | `federation-visible-within`, `federation-links-up` | no switch: a 1 ms bound; a WAN cut that never heals | `tests/federation.rs`, `the_federation_checks_catch_…` |
//! | `federation-calls-served` | no switch: calls whose deadline is below the WAN's round trip | `tests/federation.rs`, `the_calls_served_check_catches_…` |
//! | `federation-call-deadline`, `federation-not-exported` | no switch: planted call records (ended late, never ended, served after the deadline; an unexported service served, or refused otherwise on a quiet path) | `tests/federation.rs`, `the_call_checks_catch_…` |
//!
//! A new invariant gets a row: a switch (a variant, one `fault_on!` at the place of the bug) and
//! a test.

#![warn(missing_docs)]

pub mod agents;
pub mod cache;
pub mod cli;
pub mod clock;
mod directories;
pub mod faults;
pub mod federation;
pub mod html;
pub mod invariants;
pub mod network;
mod pace;
pub mod placement;
pub mod pubsub;
mod queue;
pub mod report;
pub mod rpc;
pub mod scenario;
pub mod services;
pub mod sessions;
pub mod stamps;
pub mod storage;
pub mod sweep;
pub mod trace;
pub mod views;
pub mod world;
pub mod writes;
