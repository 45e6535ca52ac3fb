//! The byte budget of a streamed channel's inbox ([`TransportConfig::inbox_bytes`]).
//!
//! Counting messages alone let a channel whose frames reach 4 MiB queue 65,536 of them
//! (256 GiB) before its readers stopped. Each received message is charged its payload's length
//! against the budget before it is queued, and holds the charge until the message itself is
//! dropped: the budget bounds what waits in the inbox and what its consumer has in hand. The
//! payload's bytes may outlive the message (a subscriber keeps a slice of a large one) without
//! holding the budget: charging what the application keeps would stop the channel, for every
//! peer, once it kept the budget's worth. A reader that finds the budget spent waits, as it
//! waits for a full queue: it stops reading its stream, and QUIC flow control stops the sender.
//! Nothing is dropped.
//!
//! [`TransportConfig::inbox_bytes`]: crate::TransportConfig::inbox_bytes

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// One streamed channel's byte budget, shared by the readers of every peer's stream.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    room: Arc<Semaphore>,
}

/// A message's share of its channel's budget, given back when the last clone of the message
/// is dropped. Messages built outside an inbox hold none.
#[derive(Clone, Default)]
pub(crate) struct Charge(Option<Arc<OwnedSemaphorePermit>>);

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.0.as_ref().map_or(0, |permit| permit.num_permits());
        write!(f, "Charge({bytes})")
    }
}

/// What a message holds of the budget does not tell one message from another.
impl PartialEq for Charge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Charge {}

impl ByteBudget {
    /// A budget of `total` bytes; at most [`Semaphore::MAX_PERMITS`] (checked by the config).
    pub fn new(total: usize) -> Self {
        Self {
            room: Arc::new(Semaphore::new(total)),
        }
    }

    /// Charges `len` bytes if the budget has room for them now.
    pub fn try_charge(&self, len: usize) -> Option<Charge> {
        let Some(permits) = permits_of(len) else {
            return Some(Charge::default());
        };
        match self.room.clone().try_acquire_many_owned(permits) {
            Ok(room) => Some(Charge(Some(Arc::new(room)))),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => None,
        }
    }

    /// Charges `len` bytes once the budget has room for them. Charges wait their turn in
    /// order, so a large one is not overtaken for ever by small ones.
    pub async fn charge(&self, len: usize) -> Charge {
        let Some(permits) = permits_of(len) else {
            return Charge::default();
        };
        match self.room.clone().acquire_many_owned(permits).await {
            Ok(room) => Charge(Some(Arc::new(room))),
            // The semaphore is never closed; were it, the message would go uncharged.
            Err(_) => Charge::default(),
        }
    }
}

/// The permits `len` bytes take: `None` for none. Frames are at most `u32::MAX` bytes (the
/// length prefix), so the conversion holds; saturating keeps it total anyway.
fn permits_of(len: usize) -> Option<u32> {
    (len > 0).then(|| u32::try_from(len).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ByteBudget {
        /// Bytes charged and not yet given back, of a budget of `total`.
        fn charged(&self, total: usize) -> usize {
            total - self.room.available_permits()
        }
    }

    #[tokio::test]
    async fn a_charge_is_held_until_its_last_clone_is_dropped() {
        let budget = ByteBudget::new(10);
        let first = budget.try_charge(6).unwrap();
        assert_eq!(budget.charged(10), 6);
        assert!(budget.try_charge(5).is_none());
        let clone = first.clone();
        drop(first);
        assert_eq!(budget.charged(10), 6, "a clone still holds it");
        drop(clone);
        assert_eq!(budget.charged(10), 0);
        assert!(budget.try_charge(5).is_some());
    }

    #[tokio::test]
    async fn a_waiting_charge_goes_through_once_room_is_given_back() {
        let budget = Arc::new(ByteBudget::new(4));
        let held = budget.charge(4).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.charge(2).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        drop(waiting.await.unwrap());
        assert_eq!(budget.charged(4), 0, "the second charge was given back");
    }
}
