//! Pushing a changed directory to the links at once, rate-limited: the first change after a
//! quiet spell goes out at once, later ones are coalesced into one push per spacing. The probes
//! still carry the whole directory, so a lost push is repaired one probe round later.

use std::time::Duration;

use crate::time::Instant;

pub(super) struct Pusher {
    spacing: Option<Duration>,
    pending: bool,
    last: Option<Instant>,
}

impl Pusher {
    /// `None`: never push.
    pub fn new(spacing: Option<Duration>) -> Self {
        Self {
            spacing,
            pending: false,
            last: None,
        }
    }

    /// The directory changed in a way the links want to hear of.
    pub fn mark(&mut self) {
        self.pending = self.spacing.is_some();
    }

    /// When the pending push may go out; `None` when nothing is pending.
    pub fn due(&self) -> Option<Instant> {
        let spacing = self.spacing?;
        self.pending
            .then(|| self.last.map_or(Instant::ZERO, |last| last + spacing))
    }

    /// Whether a push goes out at `now` (and then it is no longer pending).
    pub fn take(&mut self, now: Instant) -> bool {
        match self.due() {
            Some(due) if due <= now => {
                self.pending = false;
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    #[test]
    fn the_first_change_goes_at_once_and_a_burst_is_coalesced() {
        let mut pusher = Pusher::new(Some(Duration::from_millis(50)));
        assert_eq!(pusher.due(), None);
        assert!(!pusher.take(at(0)));
        pusher.mark();
        assert!(pusher.take(at(1000)), "after a quiet spell: at once");
        // Three changes within the spacing: one push, 50 ms after the last one.
        for t in [1001, 1010, 1040] {
            pusher.mark();
            assert!(!pusher.take(at(t)));
        }
        assert_eq!(pusher.due(), Some(at(1050)));
        assert!(pusher.take(at(1050)));
        assert!(!pusher.take(at(1200)), "nothing pending");
    }

    #[test]
    fn without_a_spacing_nothing_is_pushed() {
        let mut pusher = Pusher::new(None);
        pusher.mark();
        assert_eq!(pusher.due(), None);
        assert!(!pusher.take(at(10_000)));
    }
}
