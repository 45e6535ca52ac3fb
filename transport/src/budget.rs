//! The byte budget of a streamed channel's inbox ([`TransportConfig::inbox_bytes`]).
//!
//! Counting messages alone let a channel whose frames reach 4 MiB queue 65,536 of them
//! (256 GiB) before its readers stopped. Each received payload is charged its length against
//! the budget before it is queued, and carries the charge inside its [`Bytes`]: the charge is
//! given back when the last handle on those bytes is dropped, so the budget bounds what the
//! inbox holds *and* what the application still keeps of it. A reader that finds the budget
//! spent waits, as it waits for a full queue: it stops reading its stream, and QUIC flow control
//! stops the sender. Nothing is dropped.
//!
//! [`TransportConfig::inbox_bytes`]: crate::TransportConfig::inbox_bytes

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// One streamed channel's byte budget, shared by the readers of every peer's stream.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    room: Arc<Semaphore>,
}

/// A payload with the budget it holds; the budget is returned when this is dropped.
struct Charged {
    payload: Bytes,
    _room: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

impl ByteBudget {
    /// A budget of `total` bytes; at most [`Semaphore::MAX_PERMITS`] (checked by the config).
    pub fn new(total: usize) -> Self {
        Self {
            room: Arc::new(Semaphore::new(total)),
        }
    }

    /// Charges `payload` if the budget has room for it now; gives it back unchanged if not.
    pub fn try_charge(&self, payload: Bytes) -> Result<Bytes, Bytes> {
        let Some(len) = charge_of(&payload) else {
            return Ok(payload);
        };
        match self.room.clone().try_acquire_many_owned(len) {
            Ok(room) => Ok(holding(payload, room)),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(payload),
        }
    }

    /// Charges `payload` once the budget has room for it. Payloads wait their turn in order,
    /// so a large one is not overtaken for ever by small ones.
    pub async fn charge(&self, payload: Bytes) -> Bytes {
        let Some(len) = charge_of(&payload) else {
            return payload;
        };
        match self.room.clone().acquire_many_owned(len).await {
            Ok(room) => holding(payload, room),
            // The semaphore is never closed; were it, the payload would go uncharged.
            Err(_) => payload,
        }
    }
}

/// The permits `payload` takes: `None` for an empty one. Frames are at most `u32::MAX` bytes
/// (the length prefix), so the conversion holds; saturating keeps it total anyway.
fn charge_of(payload: &Bytes) -> Option<u32> {
    (!payload.is_empty()).then(|| u32::try_from(payload.len()).unwrap_or(u32::MAX))
}

fn holding(payload: Bytes, room: OwnedSemaphorePermit) -> Bytes {
    Bytes::from_owner(Charged {
        payload,
        _room: room,
    })
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
    async fn a_payload_holds_its_bytes_until_its_last_handle_is_dropped() {
        let budget = ByteBudget::new(10);
        let first = budget.try_charge(Bytes::from_static(b"123456")).unwrap();
        assert_eq!(&first[..], b"123456");
        assert_eq!(budget.charged(10), 6);
        assert!(budget.try_charge(Bytes::from_static(b"12345")).is_err());
        let slice = first.slice(1..2);
        drop(first);
        assert_eq!(budget.charged(10), 6, "a slice still holds the payload");
        drop(slice);
        assert_eq!(budget.charged(10), 0);
        assert!(budget.try_charge(Bytes::from_static(b"12345")).is_ok());
    }

    #[tokio::test]
    async fn a_waiting_charge_goes_through_once_room_is_given_back() {
        let budget = Arc::new(ByteBudget::new(4));
        let held = budget.charge(Bytes::from_static(b"abcd")).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.charge(Bytes::from_static(b"ef")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert_eq!(&waiting.await.unwrap()[..], b"ef");
        assert_eq!(
            budget.charged(4),
            0,
            "the second payload was dropped with the task"
        );
    }
}
