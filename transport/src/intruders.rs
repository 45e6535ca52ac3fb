//! Handshakes refused because the other side is not of this cluster (wrong secret, another CA,
//! another cluster name), told to the operator at warn level: a misconfigured node or a stranger
//! probing the port is something to act on. A flood of them must not flood the log, so at most
//! one line is written per [`QUIET_FOR`], carrying how many were refused since the last one.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::error::HandshakeFailure;

/// The least time between two warnings.
pub(crate) const QUIET_FOR: Duration = Duration::from_secs(10);

/// Whether we dialled the refused side or it dialled us.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    Dialled,
    Accepted,
}

/// When the last warning was written, and how many refusals have not been told since.
#[derive(Debug, Default)]
pub(crate) struct IntruderLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl IntruderLog {
    /// Notes a failed handshake with `remote`; only failures of trust are told.
    pub fn failed(&self, remote: SocketAddr, side: Side, failure: &HandshakeFailure) {
        if !is_trust_failure(failure) {
            return;
        }
        if let Some(refused) = self.due(Instant::now()) {
            let what = match side {
                Side::Dialled => "a node we dialled refused us or was refused",
                Side::Accepted => "refused an incoming connection",
            };
            warn!(
                %remote, %failure, refused_in_last_period = refused,
                "{what}: it is not of this cluster (check the secret, CA and cluster name)"
            );
        }
    }

    /// Counts one refusal; `Some(count)` when a warning is due, with the refusals it covers.
    fn due(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, pending) = &mut *state;
        *pending += 1;
        if last.is_some_and(|at| now.duration_since(at) < QUIET_FOR) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(pending))
    }
}

fn is_trust_failure(failure: &HandshakeFailure) -> bool {
    matches!(
        failure,
        HandshakeFailure::UntrustedCertificate
            | HandshakeFailure::NoCertificate
            | HandshakeFailure::ForeignCluster
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_quiet_period_carries_the_refusals_since_the_last() {
        let log = IntruderLog::default();
        let t0 = Instant::now();
        assert_eq!(log.due(t0), Some(1));
        for i in 1..=5 {
            assert_eq!(log.due(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.due(t0 + QUIET_FOR), Some(6));
        assert_eq!(log.due(t0 + QUIET_FOR), None);
    }

    #[test]
    fn only_failures_of_trust_are_told() {
        assert!(is_trust_failure(&HandshakeFailure::UntrustedCertificate));
        assert!(is_trust_failure(&HandshakeFailure::ForeignCluster));
        assert!(!is_trust_failure(&HandshakeFailure::Timeout));
        assert!(!is_trust_failure(&HandshakeFailure::Other("reset".into())));
    }
}
