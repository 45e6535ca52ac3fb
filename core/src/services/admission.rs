//! Which calls reaching a node its handlers take: the deterministic gate in front of them.
//!
//! A call is turned away, before any handler runs, when its caller is over the per-caller rate
//! limit, when the node already runs as many calls as it allows, or when it does not decode.
//! Each refusal is one of the [`RemoteError`]s that tell the caller the handler did not run, so
//! it may try another instance. The runtime and the simulator both serve through this gate.
//!
//! A call let in runs at most [`Admission::max_deadline`]: the deadline is the caller's to
//! name, but a peer that names weeks would hold a handler and its slot that long.

use std::time::Duration;

use super::rate_limit::{RateLimit, RateLimits};
use super::wire::{RemoteError, RpcRequest};
use crate::time::Instant;
use crate::NodeId;

/// Calling nodes whose rate-limit buckets a node keeps; callers beyond share one bucket.
pub const RATE_LIMITED_CALLERS_MAX: usize = 10_000;

/// The longest a call from elsewhere runs on a node by default (a peer's RPC, a linked
/// cluster's call): the operator's HTTP calls are held to the same five minutes.
pub const MAX_CALL_DEADLINE: Duration = Duration::from_secs(300);

/// The gate of one serving node.
#[derive(Debug)]
pub struct Admission {
    limits: Option<RateLimits<NodeId>>,
    running: usize,
    running_max: usize,
    deadline_max: Duration,
}

impl Admission {
    /// A gate that limits each caller to `rate_limit` (if any), runs at most `running_max`
    /// calls at once, each for at most [`MAX_CALL_DEADLINE`].
    pub fn new(rate_limit: Option<RateLimit>, running_max: usize) -> Self {
        Self {
            limits: rate_limit.map(|limit| RateLimits::new(limit, RATE_LIMITED_CALLERS_MAX)),
            running: 0,
            running_max,
            deadline_max: MAX_CALL_DEADLINE,
        }
    }

    /// The same gate, running each call for at most `deadline_max`.
    pub fn with_max_deadline(self, deadline_max: Duration) -> Self {
        Self {
            deadline_max,
            ..self
        }
    }

    /// The longest an admitted call runs, whatever deadline its caller sent: its handler is
    /// given `min(requested, max_deadline)`.
    pub fn max_deadline(&self) -> Duration {
        self.deadline_max
    }

    /// Lets the call `payload` from `from` in (it then counts as running until
    /// [`Admission::finished`]), or says why not.
    pub fn admit(
        &mut self,
        now: Instant,
        from: NodeId,
        payload: &[u8],
    ) -> Result<RpcRequest, RemoteError> {
        if let Some(limits) = &mut self.limits {
            if let Err(limited) = limits.try_acquire(now, &from) {
                let retry_after_ms =
                    u64::try_from(limited.retry_after.as_millis()).unwrap_or(u64::MAX);
                return Err(RemoteError::RateLimited { retry_after_ms });
            }
        }
        if self.running >= self.running_max {
            return Err(RemoteError::Overloaded);
        }
        let request: RpcRequest =
            postcard::from_bytes(payload).map_err(|e| RemoteError::BadRequest(e.to_string()))?;
        self.running += 1;
        Ok(request)
    }

    /// One admitted call ended (answered, failed or timed out).
    pub fn finished(&mut self) {
        debug_assert!(self.running > 0, "more calls finished than admitted");
        self.running = self.running.saturating_sub(1);
    }

    /// Calls admitted and not yet finished.
    pub fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand10::SeedableRng;

    use super::*;
    use crate::services::trace::TraceContext;

    fn request() -> Vec<u8> {
        let request = RpcRequest {
            service: "s".into(),
            instance: 1,
            trace: TraceContext::new_root(&mut rand10::rngs::StdRng::from_seed([1; 32]), true),
            origin: None,
            body: vec![1, 2],
        };
        postcard::to_stdvec(&request).unwrap()
    }

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    #[test]
    fn a_full_node_turns_calls_away_until_one_finishes() {
        let mut gate = Admission::new(None, 1);
        let caller = NodeId::from_u128(1);
        assert!(gate.admit(at(0), caller, &request()).is_ok());
        assert_eq!(
            gate.admit(at(0), caller, &request()),
            Err(RemoteError::Overloaded)
        );
        gate.finished();
        assert!(gate.admit(at(0), caller, &request()).is_ok());
    }

    #[test]
    fn a_caller_over_its_rate_is_told_when_to_come_back() {
        let limit = RateLimit::per_second(1, 1).unwrap();
        let mut gate = Admission::new(Some(limit), 10);
        let caller = NodeId::from_u128(1);
        assert!(gate.admit(at(0), caller, &request()).is_ok());
        match gate.admit(at(0), caller, &request()) {
            Err(e @ RemoteError::RateLimited { .. }) => assert!(e.not_executed()),
            other => panic!("expected rate limited, got {other:?}"),
        }
        let other_caller = NodeId::from_u128(2);
        assert!(gate.admit(at(0), other_caller, &request()).is_ok());
    }

    #[test]
    fn garbage_is_a_bad_request_and_takes_no_slot() {
        let mut gate = Admission::new(None, 1);
        let refused = gate.admit(at(0), NodeId::from_u128(1), &[0xff, 0xff, 0xff]);
        assert!(matches!(refused, Err(RemoteError::BadRequest(_))));
        assert_eq!(gate.running(), 0);
    }
}
