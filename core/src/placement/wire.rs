//! The placement machines' messages, carried on the coordination channel.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

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
    },
}

/// Encodes a message as the core's `CoreMessage::Placement`.
pub fn encode(message: &PlacementMessage) -> Bytes {
    envelope::encode(envelope::PLACEMENT, message)
}
