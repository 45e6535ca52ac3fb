//! Admitting incoming QUIC connections on an endpoint open to strangers: at most a bounded
//! number handshake at once, and once half of them are taken, a sender must first prove it
//! receives at its address (a Retry).
//!
//! Every decision here is stateless for the sender: a Retry or a refusal costs one small packet
//! (smaller than the sender's padded Initial, so it reflects less than it receives) and no
//! memory. Only a handshake holding a permit keeps state, until it completes or times out.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

/// Why an incoming connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TurnedAway {
    /// Asked to prove its address first.
    Retried,
    /// Refused: every permit is held.
    Refused,
}

/// The permits of one endpoint's handshakes.
#[derive(Debug)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    /// At most `limit` handshakes in progress at once.
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Handshakes holding a permit now.
    pub fn in_progress(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// The connection with the permit its handshake holds until it ends, or why it was turned
    /// away (it has been told).
    pub fn admit(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<(quinn::Incoming, OwnedSemaphorePermit), TurnedAway> {
        let busy = self.in_progress() >= self.limit / 2;
        if busy && !incoming.remote_address_validated() && incoming.may_retry() {
            // Under load: a sender that cannot receive at its address never comes back.
            let _ = incoming.retry();
            return Err(TurnedAway::Retried);
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((incoming, permit)),
            Err(_) => {
                let (remote, limit) = (incoming.remote_address(), self.limit);
                debug!(%remote, limit, "refusing handshake: too many in progress");
                incoming.refuse();
                Err(TurnedAway::Refused)
            }
        }
    }
}
