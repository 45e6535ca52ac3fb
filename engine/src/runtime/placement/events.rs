//! The placement event stream for applications ([`super::PlacementHandle::events`]): owner
//! changes as this node's view sees them, instances started and stopped here (with how long
//! each waited without an owner), handoffs begun and ended, and duplicates detected.

use std::time::Duration;

use foundation_core::placement::{Instance, PlacementEvent, StopReason};
use foundation_core::NodeId;
use tokio::sync::broadcast;

use super::PlacementView;

/// Notices kept for a slow subscriber before it lags (and misses the oldest).
pub(crate) const NOTICE_BUFFER: usize = 1024;

/// Something placement did or saw, as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementNotice {
    /// This node's view names another owner for an instance (`None`: too few eligible
    /// members). The new owner runs it once it holds the lease.
    OwnerChanged {
        /// The instance.
        instance: Instance,
        /// The owner the view named before.
        from: Option<NodeId>,
        /// The owner it names now.
        to: Option<NodeId>,
    },
    /// The instance started here.
    Started {
        /// The instance.
        instance: Instance,
        /// How long it was without an owner as this node saw it: from this node's view naming
        /// it the owner to its start (the lease, the previous owner's stop or handoff). The
        /// failure detection before a crash's view change is not in it: no node knows when a
        /// crash happened.
        without_owner: Duration,
    },
    /// The instance stopped here.
    Stopped {
        /// The instance.
        instance: Instance,
        /// Why.
        reason: StopReason,
    },
    /// The instance, running here, is being handed over to `to` (`begin_handoff`).
    HandoffBegun {
        /// The instance.
        instance: Instance,
        /// Its next owner.
        to: NodeId,
    },
    /// The state of the instance arrived here from its previous owner (`end_handoff`), or is
    /// this node's own from a handoff its view gave back to it; it starts here next.
    HandoffEnded {
        /// The instance.
        instance: Instance,
        /// The previous owner (this node, for a handoff taken back).
        from: NodeId,
        /// The state's size.
        bytes: usize,
    },
    /// Another node ran the instance while it ran here, both under valid leases (see
    /// `foundation_core::placement` for the evidence). Should never happen.
    DuplicateDetected {
        /// The instance.
        instance: Instance,
        /// The other node.
        with: NodeId,
    },
}

/// The application's notice for a core event, if it has one (routed messages have their own
/// answers).
pub(crate) fn notice_of(event: &PlacementEvent) -> Option<PlacementNotice> {
    let notice = match event {
        PlacementEvent::Start { instance, waited } => PlacementNotice::Started {
            instance: instance.clone(),
            without_owner: *waited,
        },
        PlacementEvent::Stop { instance, reason } => PlacementNotice::Stopped {
            instance: instance.clone(),
            reason: *reason,
        },
        PlacementEvent::BeginHandoff { instance, to } => PlacementNotice::HandoffBegun {
            instance: instance.clone(),
            to: *to,
        },
        PlacementEvent::EndHandoff {
            instance,
            from,
            state,
        } => PlacementNotice::HandoffEnded {
            instance: instance.clone(),
            from: *from,
            bytes: state.len(),
        },
        PlacementEvent::Duplicate { instance, with } => PlacementNotice::DuplicateDetected {
            instance: instance.clone(),
            with: *with,
        },
        PlacementEvent::Deliver { .. } | PlacementEvent::Routed { .. } => return None,
    };
    Some(notice)
}

/// Sends an [`PlacementNotice::OwnerChanged`] for each instance whose owner differs between
/// two published views (a workload declared since counts as changed from no owner).
pub(crate) fn owner_changes(
    before: &PlacementView,
    after: &PlacementView,
    notices: &broadcast::Sender<PlacementNotice>,
) {
    for (name, workload) in after {
        let held = before.get(name);
        for view in &workload.instances {
            let from = held
                .and_then(|w| w.instances.get(view.shard as usize))
                .and_then(|i| i.owner);
            if from != view.owner {
                // Nobody listening is fine: the stream is for whoever subscribed.
                let _ = notices.send(PlacementNotice::OwnerChanged {
                    instance: Instance::new(name, view.shard),
                    from,
                    to: view.owner,
                });
            }
        }
    }
}
