//! What the node's handles ask of the driver task, and what it answers with.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::VarValue;
use foundation_core::membership::ForceLeaveError;
use foundation_core::node::{Command, ForceLeft, Input};
use foundation_core::placement::{PlacementError, WorkloadSpec};
use foundation_core::replication::{RestoreError, RestoredKeyspace, Snapshot, Write};
use foundation_core::vars::{Life, VarSpec, VarsError};

/// What the driver answers a majority write with: the majority needed, and the count of
/// holders as acks arrive.
pub(crate) type MajorityWait = (usize, watch::Receiver<usize>);

/// What the node handle asks of the driver.
pub(crate) enum Request {
    Core(Command),
    /// Something that arrived outside the inbox's channels (a bulk transfer, read in full).
    Input(Input),
    /// A local write to a replicated keyspace, answered once applied here.
    Write(
        Write,
        oneshot::Sender<Result<(), foundation_core::replication::ReplicationError>>,
    ),
    /// Own (or stop owning) an ephemeral entry, answered once applied here and the directory
    /// reflects it.
    SetEphemeral {
        keyspace: &'static str,
        name: String,
        value: Option<Vec<u8>>,
        done: oneshot::Sender<Result<(), foundation_core::node::WriteError>>,
    },
    /// Set the health of this node's instance `local` of `service` in the record the core
    /// holds, answered once applied here.
    SetHealth {
        service: String,
        local: u64,
        health: foundation_core::services::Health,
        done: oneshot::Sender<Result<(), foundation_core::node::WriteError>>,
    },
    /// A local write that waits for a majority: answered with the majority needed and a
    /// count of holders that the driver raises as acks arrive.
    WriteMajority(
        Write,
        Duration,
        oneshot::Sender<Result<MajorityWait, foundation_core::replication::ReplicationError>>,
    ),
    /// Declare or compare-and-set a variable.
    Vars(VarsRequest),
    /// Replace this node's metadata, answered once applied here and its effects (placement
    /// by the new tags) carried out.
    SetMetadata(
        foundation_core::membership::NodeMetadata,
        oneshot::Sender<()>,
    ),
    /// Remove a failed or departed member from every table now (`force-leave`).
    ForceLeave(
        foundation_core::NodeId,
        oneshot::Sender<Result<ForceLeft, ForceLeaveError>>,
    ),
    /// Declare a placed workload.
    Placement(PlacementRequest),
    /// A cache's request.
    Cache(super::caches::CacheRequest),
    /// Every replicated keyspace that is not ephemeral, as a snapshot.
    Snapshot(oneshot::Sender<Snapshot>),
    /// Merge a snapshot into the keyspaces, answered once the merge is durable here.
    Restore(
        Box<Snapshot>,
        oneshot::Sender<Result<Vec<RestoredKeyspace>, RestoreError>>,
    ),
    /// Leave gracefully, then stop.
    Stop(oneshot::Sender<()>),
    /// Stop at once without telling anyone, as a crash would.
    Abort(oneshot::Sender<()>),
}

/// The driver task has ended: the node stopped.
#[derive(Debug)]
pub(crate) struct Stopped;

/// Sends the request `make` builds around a reply channel, and waits for the reply.
pub(crate) async fn ask<T>(
    requests: &mpsc::Sender<Request>,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, Stopped> {
    let (done, result) = oneshot::channel();
    requests.send(make(done)).await.map_err(|_| Stopped)?;
    result.await.map_err(|_| Stopped)
}

/// Asks the driver to own (`Some`) or stop owning (`None`) the ephemeral entry `name` of
/// `keyspace`, and waits until it is applied here and the directory reflects it.
pub(crate) async fn set_ephemeral(
    requests: &mpsc::Sender<Request>,
    keyspace: &'static str,
    name: String,
    value: Option<Vec<u8>>,
) -> Result<Result<(), foundation_core::node::WriteError>, Stopped> {
    ask(requests, |done| Request::SetEphemeral {
        keyspace,
        name,
        value,
        done,
    })
    .await
}

/// Asks the driver to set the health of this node's instance `local` of `service`, and waits
/// until it is applied here (nothing changes if the instance is gone or already has it).
pub(crate) async fn set_health(
    requests: &mpsc::Sender<Request>,
    service: String,
    local: u64,
    health: foundation_core::services::Health,
) -> Result<Result<(), foundation_core::node::WriteError>, Stopped> {
    ask(requests, |done| Request::SetHealth {
        service,
        local,
        health,
        done,
    })
    .await
}

/// What a majority-decided write proposes.
#[derive(Clone)]
pub(crate) enum VarWrite {
    /// Replace version `expected` with `value`.
    Cas { expected: u64, value: VarValue },
    /// Apply a session's outcome to a ledger's current record.
    Outcome(foundation_core::vars::Outcome),
    /// Move the variable to these acceptors from its next version on.
    Move(std::collections::BTreeSet<Life>),
}

/// What a `VarsHandle` asks of the driver.
pub(crate) enum VarsRequest {
    Declare {
        name: String,
        spec: VarSpec,
        done: oneshot::Sender<Result<(), VarsError>>,
    },
    /// A write decided by the variable's acceptors: a compare-and-set, or a session's outcome
    /// committed to a ledger.
    Propose {
        name: String,
        write: VarWrite,
        timeout: Duration,
        done: oneshot::Sender<Result<CasOutcome<Life>, VarsError>>,
    },
    /// An `lww` write.
    Set {
        name: String,
        value: VarValue,
        done: oneshot::Sender<Result<(), VarsError>>,
    },
    /// A counter's draw (`refill: false`) or refill.
    Counter {
        name: String,
        amount: u64,
        refill: bool,
        done: oneshot::Sender<Result<(), VarsError>>,
    },
}

/// What a `PlacementHandle` asks of the driver.
pub(crate) enum PlacementRequest {
    Declare {
        name: String,
        spec: WorkloadSpec,
        done: oneshot::Sender<Result<(), PlacementError>>,
    },
    /// Route a message by key; answered with its outcome (at the latest at the deadline).
    Route {
        workload: String,
        key: Vec<u8>,
        payload: Vec<u8>,
        ttl: std::time::Duration,
        done: oneshot::Sender<Result<(), super::placement::PlacementCallError>>,
    },
    /// The state of an instance being handed over from here.
    HandOff {
        instance: foundation_core::placement::Instance,
        state: Vec<u8>,
        done: oneshot::Sender<Result<(), PlacementError>>,
    },
}
