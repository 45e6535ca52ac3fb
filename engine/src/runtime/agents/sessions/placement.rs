//! Where a session is coordinated, and what happens when that node is lost.
//!
//! [`Coordinator::Rendezvous`] places the coordinator on the live member (this node included)
//! with the highest rendezvous weight of the session id
//! (`foundation_core::agents::sessions::place`), so sessions spread over the cluster and every
//! node that sees the same members picks the same one. The caller asks that node
//! to run the session (an agent request addressed to [`COORDINATOR`], a name no agent can
//! take) and waits for its report.
//!
//! **A coordinator lost mid-session is not replaced: the session is aborted, once.** Resuming
//! it elsewhere would need the answers the coordinator had acknowledged, and those live only
//! in its machine: a new coordinator starting over would lose acknowledged bids (the issue's
//! rule), and re-asking leaks information a sealed or clock mechanism must not leak (a Dutch
//! bidder who saw the clock fall could wait for a lower price the second time). So when the
//! coordinator's node stops being alive, or the request to it fails, the caller settles the
//! session on its ledger ([`AgentsHandle::settle_session`]): an empty outcome takes the
//! session's one slot, unless the coordinator's outcome (or a participant's abort) got there
//! first — which the caller then learns. Either way the ledger holds one outcome for the
//! session, and [`SessionError::CoordinatorLost`] says which. A session without a ledger has
//! nothing to settle; it simply has no outcome.

use std::time::Duration;

use foundation_core::agents::sessions::place::coordinator;
use foundation_core::agents::wire::{AgentReply, AgentRequest, Delivery};
use foundation_core::membership::MemberState;
use foundation_core::vars::SessionId;
use foundation_core::{NodeAddr, NodeId};

use super::{Session, SessionError, SessionReport};
use crate::runtime::agents::{remote, AgentsHandle, DeliveryError};

/// The address of every node's session coordinator in agent requests; not a valid agent
/// name, so no agent can take it.
pub(crate) const COORDINATOR: &str = "$sessions";

/// How long a caller waits for a remote coordinator beyond the session's own time, for
/// clock auctions whose round count it cannot know: rounds of `answer_within` at most.
const ROUNDS_AWAITED: u32 = 1_000;

/// What a remote coordinator answers: the report, or why the session could not run.
type RemoteRun = Result<SessionReport, String>;

impl AgentsHandle {
    /// The node that coordinates `session` under [`super::Coordinator::Rendezvous`], as this
    /// node sees the members now.
    pub fn coordinator_of(&self, session: SessionId) -> NodeAddr {
        let me = self.shared.endpoint.local();
        let members = self.shared.members.borrow();
        let alive = members.iter().filter(|m| m.state == MemberState::Alive);
        coordinator(session, alive.map(|m| m.node_addr()).chain([me])).unwrap_or(me)
    }

    /// Asks `at` to coordinate `session`; settles it if `at` is lost first.
    pub(super) async fn run_at(
        &self,
        at: NodeAddr,
        session: Session,
    ) -> Result<SessionReport, SessionError> {
        let body =
            postcard::to_stdvec(&session).map_err(|e| SessionError::Config(e.to_string()))?;
        let request = AgentRequest {
            to: COORDINATOR.to_owned(),
            delivery: Delivery::Request,
            body,
        };
        let budget = session
            .answer_within
            .saturating_mul(ROUNDS_AWAITED)
            .saturating_add(
                session
                    .commit
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.timeout),
            );
        let call = remote::call(&self.shared.endpoint, at, &request, budget);
        let lost = tokio::select! {
            reply = call => match reply {
                Ok(AgentReply::Answer(bytes)) => return decode_report(at.id, &bytes),
                Ok(other) => format!("unexpected reply {other:?}"),
                Err(e) => e.to_string(),
            },
            () = self.until_not_alive(at.id) => "its node is no longer alive".to_owned(),
        };
        tracing::warn!(session = ?session.id, coordinator = %at, why = %lost, "session coordinator lost");
        let settled = match &session.commit {
            Some(commit) => Some(
                self.settle_session(&commit.ledger, session.id, commit.timeout)
                    .await,
            ),
            None => None,
        };
        Err(SessionError::CoordinatorLost {
            coordinator: at.id,
            why: lost,
            settled,
        })
    }

    /// Returns once this node sees `node` in any state but alive (or the node stops).
    async fn until_not_alive(&self, node: NodeId) {
        let mut members = self.shared.members.clone();
        loop {
            let alive = members
                .borrow_and_update()
                .iter()
                .any(|m| m.id == node && m.state == MemberState::Alive);
            if !alive || members.changed().await.is_err() {
                return;
            }
        }
    }
}

fn decode_report(coordinator: NodeId, bytes: &[u8]) -> Result<SessionReport, SessionError> {
    let run: RemoteRun = postcard::from_bytes(bytes).map_err(|e| SessionError::Remote {
        coordinator,
        why: format!("malformed report: {e}"),
    })?;
    run.map_err(|why| SessionError::Remote { coordinator, why })
}

/// Runs a session another node asked this one to coordinate, and answers its report.
pub(crate) async fn serve(handle: &AgentsHandle, body: &[u8]) -> Result<Vec<u8>, DeliveryError> {
    let session: Session =
        postcard::from_bytes(body).map_err(|e| DeliveryError::Codec(format!("session: {e}")))?;
    let run: RemoteRun = handle.run_here(session).await.map_err(|e| e.to_string());
    postcard::to_stdvec(&run).map_err(|e| DeliveryError::Codec(e.to_string()))
}
