//! The placement machines' messages, carried on the coordination channel.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::routing::{RouteAnswer, RouteId};
use super::Instance;
use crate::envelope;
use crate::vars::Life;

/// Most instances one claim may carry: bounds what a registrar does for one message (a node
/// owning more than this many shards claims only the first ones and says so in its stats).
pub const MAX_CLAIMS: usize = 4096;

/// A message between two nodes' placement machines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementMessage {
    /// "I want to own exactly these instances": a claimant's round, sent to every registrar
    /// (each member of the agreed membership). Instances of ours missing from it are released.
    Claim {
        /// The claimant's life (must be the authenticated sender's node).
        life: Life,
        /// The round, increasing per life: an older round arriving late is ignored.
        round: u64,
        /// The instances claimed.
        claims: Vec<Instance>,
    },
    /// A registrar's answer to a round: the instances it now holds for the claimant until
    /// `lease` after it received the round.
    Granted {
        /// The round answered.
        round: u64,
        /// The instances registered for the claimant.
        granted: Vec<Instance>,
        /// How many members the registrar counts in the agreed membership: the claimant needs
        /// a majority of the largest count it hears of, so a node that has not yet learned of
        /// every member cannot win with a majority of too few.
        members: u32,
        /// The claimant's generation, as the round said it: a reply to an earlier life of the
        /// claimant says nothing about the present one.
        generation: u64,
        /// Those of the claimed instances that run on the registrar's node under a lease
        /// valid when it answered (normally none): the duplicate detector's evidence.
        running: Vec<Instance>,
    },
    /// A message routed by key to the node that runs `instance` (or is about to).
    Route {
        /// Its name: the origin's life and a number.
        id: RouteId,
        /// The instance its key maps to.
        instance: Instance,
        /// What the application sent.
        payload: Vec<u8>,
        /// How long the origin still waits for it, in microseconds: the receiver keeps it no
        /// longer (a duration, not an instant: clocks differ between nodes).
        ttl_us: u64,
    },
    /// What became of a routed message at the node it was sent to.
    RouteAnswer {
        /// The message.
        id: RouteId,
        /// Delivered, not here, or expired while buffered.
        answer: RouteAnswer,
    },
    /// An instance's state, handed over by its previous owner (on the bulk channel).
    HandoffState {
        /// The instance.
        instance: Instance,
        /// The sender's life (must be the authenticated sender's node).
        life: Life,
        /// What the application's `begin_handoff` produced.
        state: Vec<u8>,
    },
    /// "I hold the state you handed over": the previous owner may stop and release it.
    HandoffTaken {
        /// The instance.
        instance: Instance,
    },
}

/// Encodes a message as the core's `CoreMessage::Placement`.
pub fn encode(message: &PlacementMessage) -> Bytes {
    envelope::encode(envelope::PLACEMENT, message)
}
