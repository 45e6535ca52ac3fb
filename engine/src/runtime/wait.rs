//! Waits a caller gives (a request's deadline, a session's answer time, a commit's timeout)
//! become instants on the clock, and an instant past the clock's range is a panic, not a
//! deadline. A caller may well give `Duration::MAX` for "no deadline", and a placed session
//! hands its caller's waits to another node, so they are bounded here before any instant is
//! computed from them.

use std::time::Duration;

/// The longest wait: 30 years, as tokio's own "far future" (beyond this a deadline is no
/// deadline, and `Instant + Duration::MAX` overflows every clock).
const WAIT_MAX: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `wait`, at most [`WAIT_MAX`]: safe to add to any instant of a running program.
pub(crate) fn bounded(wait: Duration) -> Duration {
    wait.min(WAIT_MAX)
}
