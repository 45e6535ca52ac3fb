//! A caller's agent requests awaiting answers, each with a deadline on the caller's clock.
//!
//! An answer is taken at most once, and only while its request is outstanding and not past
//! its deadline; [`Outstanding::expire`] ends every request whose deadline has come, so a
//! request whose answer was lost ends at its deadline, never later. The simulator's callers
//! keep their requests here (the runtime's wait on a tokio timeout, which ends them alike).

use std::collections::BTreeMap;

use crate::time::Instant;

/// What became of an answer that came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// It answers its request, which ends now.
    Answered,
    /// Its request ended already (answered, expired or cancelled): dropped.
    Stale,
    /// It came after its request's deadline: dropped, and the request ends as expired.
    Late,
}

/// Requests awaiting answers, by the caller's request id.
#[derive(Clone, Debug)]
pub struct Outstanding<K> {
    until: BTreeMap<K, Instant>,
}

impl<K> Default for Outstanding<K> {
    fn default() -> Self {
        Self {
            until: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> Outstanding<K> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Request `id` awaits an answer until `until`.
    pub fn open(&mut self, id: K, until: Instant) {
        self.until.insert(id, until);
    }

    /// An answer to `id` came at `now`.
    pub fn answer(&mut self, now: Instant, id: K) -> Taken {
        match self.until.remove(&id) {
            None => Taken::Stale,
            Some(until) if now > until => Taken::Late,
            Some(_) => Taken::Answered,
        }
    }

    /// Forgets `id` without an answer (its sender gave up or failed it otherwise); whether it
    /// was outstanding.
    pub fn cancel(&mut self, id: K) -> bool {
        self.until.remove(&id).is_some()
    }

    /// Ends every request whose deadline has come by `now`, in id order.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        if fault_on!(AgentRequestsNeverExpire) {
            return Vec::new();
        }
        let due: Vec<K> = self
            .until
            .iter()
            .filter(|(_, &until)| until <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in &due {
            self.until.remove(id);
        }
        due
    }

    /// The earliest deadline of an outstanding request.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.until.values().min().copied()
    }

    /// Whether `id` awaits an answer.
    pub fn is_outstanding(&self, id: K) -> bool {
        self.until.contains_key(&id)
    }

    /// How many requests await answers.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether no request awaits an answer.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    #[test]
    fn an_answer_is_taken_once_and_only_before_the_deadline() {
        let mut table = Outstanding::new();
        table.open(1u64, at(100));
        table.open(2, at(50));
        assert_eq!(table.poll_timeout(), Some(at(50)));
        assert_eq!(table.answer(at(40), 1), Taken::Answered);
        assert_eq!(table.answer(at(41), 1), Taken::Stale);
        assert_eq!(table.answer(at(60), 2), Taken::Late);
        assert!(table.is_empty());
    }

    #[test]
    fn requests_expire_at_their_deadline_and_answers_after_are_stale() {
        let mut table = Outstanding::new();
        table.open(1u64, at(100));
        table.open(2, at(200));
        assert!(table.expire(at(99)).is_empty());
        assert_eq!(table.expire(at(100)), vec![1]);
        assert_eq!(table.answer(at(101), 1), Taken::Stale);
        assert!(table.is_outstanding(2));
        assert!(table.cancel(2));
        assert!(!table.cancel(2));
        assert_eq!(table.poll_timeout(), None);
    }
}
