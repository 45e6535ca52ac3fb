//! What replication reports to the application, and its timers: the types the core's effects
//! name, kept apart from the machine so the effects module does not import it.

use super::wire::Origin;

/// Replication's timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationTimer {
    /// Time to send our digest to a random live member.
    AntiEntropy,
}

/// What replication reports to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// A key's live value changed, by a local write or a remote one (`None`: absent).
    KeyChanged {
        /// The keyspace.
        keyspace: String,
        /// The key.
        key: String,
        /// The value before.
        old: Option<Vec<u8>>,
        /// The value now.
        new: Option<Vec<u8>>,
    },
    /// One more member holds a write that asked for acknowledgements
    /// ([`super::Replication::write_acked`]).
    Acked {
        /// The keyspace written.
        keyspace: String,
        /// Who the write was issued as.
        origin: Origin,
        /// The write's seq.
        seq: u64,
        /// Distinct members holding it now, ourselves included.
        holders: usize,
        /// The group a majority is counted in, ourselves included (the agreed membership).
        members: usize,
    },
}
