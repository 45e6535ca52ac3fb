//! The sessions this node coordinated — at most [`KEPT`], running or ended, the oldest that
//! ended forgotten first — for
//! `GET /agents/sessions`, the status page and `foundation agents sessions`. A session its
//! mechanism refuses as it opens ends `refused`, with the reason. A session whose future is
//! dropped before it ends (its caller gave up waiting on it, the node stopped) ends
//! `abandoned`; nothing is claimed about what it would have decided.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::{millis, CommitState, Session, SessionReport};

/// Sessions remembered; the oldest that ended is forgotten first.
pub const KEPT: usize = 256;

/// The state of a session's row until it ends.
const RUNNING: &str = "running";

/// One session as the log shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionRow {
    /// The session id.
    pub session: u64,
    /// Its mechanism (`sealed-bid`, `english`, …).
    pub mechanism: &'static str,
    /// What it decides about: the item, question, task or market.
    pub subject: String,
    /// `running`, `refused` (it never ran: the reason is the outcome), `abandoned` (its future
    /// was dropped before it ended: its caller gave up on it or the node stopped), else how its
    /// outcome ended: `committed`, `already_committed`, `not_committed` or `decided` (nothing
    /// to commit).
    pub state: &'static str,
    /// Participants invited.
    pub participants: usize,
    /// Participants with an accepted answer, once ended.
    pub answered: Option<usize>,
    /// Answers refused, once ended.
    pub refused: Option<usize>,
    /// Rounds of asks, once ended.
    pub rounds: Option<u64>,
    /// The decision in words, once ended.
    pub outcome: Option<String>,
    /// The ledger version it wrote, or why it did not, once ended.
    pub commit: Option<String>,
    /// From opening to the end of the commit, once ended.
    pub duration_ms: Option<u64>,
}

/// The log: rows by the order sessions opened in.
#[derive(Default)]
pub(crate) struct SessionLog {
    rows: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    next: u64,
    rows: BTreeMap<u64, SessionRow>,
}

/// Which row a running session writes its end to; dropped before it is written, it marks the
/// row `abandoned`, so a cancelled session does not show `running` for ever.
pub(crate) struct Entry<'log> {
    log: &'log SessionLog,
    row: u64,
    open: bool,
}

impl Entry<'_> {
    /// The row, which the caller now ends.
    fn close(mut self) -> u64 {
        self.open = false;
        self.row
    }
}

impl Log {
    /// Forgets the oldest session that ended, so a long one still shows while it runs; the
    /// oldest running one only when more than [`KEPT`] run at once.
    fn forget_oldest(&mut self) {
        let ended = self.rows.iter().find(|(_, r)| r.state != RUNNING);
        let oldest = ended.or_else(|| self.rows.first_key_value());
        if let Some(row) = oldest.map(|(row, _)| *row) {
            self.rows.remove(&row);
        }
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if self.open {
            if let Some(row) = self.log.lock().rows.get_mut(&self.row) {
                row.state = "abandoned";
            }
        }
    }
}

impl SessionLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `session` as running with `participants`.
    pub(crate) fn opened(&self, session: &Session, participants: usize) -> Entry<'_> {
        let mut log = self.lock();
        let entry = log.next;
        log.next += 1;
        let row = SessionRow {
            session: session.id.0,
            mechanism: session.mechanism.name(),
            subject: session.mechanism.subject().to_owned(),
            state: RUNNING,
            participants,
            answered: None,
            refused: None,
            rounds: None,
            outcome: None,
            commit: None,
            duration_ms: None,
        };
        log.rows.insert(entry, row);
        while log.rows.len() > KEPT {
            log.forget_oldest();
        }
        Entry {
            log: self,
            row: entry,
            open: true,
        }
    }

    /// Records how the session of `entry` ended.
    pub(crate) fn ended(
        &self,
        entry: Entry,
        report: &SessionReport,
        outcome: String,
        took: Duration,
    ) {
        let entry = entry.close();
        let mut log = self.lock();
        let Some(row) = log.rows.get_mut(&entry) else {
            return; // Forgotten meanwhile: more than KEPT sessions ran at once.
        };
        row.state = report.commit.label();
        row.answered = Some(report.answered);
        row.refused = Some(report.rejected.len());
        row.rounds = Some(report.rounds);
        row.outcome = Some(outcome);
        row.commit = match &report.commit {
            CommitState::Committed { version } | CommitState::AlreadyCommitted { version } => {
                Some(format!("version {version}"))
            }
            CommitState::NotCommitted(why) => Some(why.clone()),
            CommitState::NotRequested => None,
        };
        row.duration_ms = Some(millis(took));
    }

    /// Records that the session of `entry` was refused as it opened, and why.
    pub(crate) fn refused(&self, entry: Entry, why: &str, took: Duration) {
        let entry = entry.close();
        let mut log = self.lock();
        let Some(row) = log.rows.get_mut(&entry) else {
            return; // Forgotten meanwhile: more than KEPT sessions ran at once.
        };
        row.state = "refused";
        row.outcome = Some(why.to_owned());
        row.duration_ms = Some(millis(took));
    }

    /// Every row, oldest first.
    pub(crate) fn rows(&self) -> Vec<SessionRow> {
        self.lock().rows.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::agents::sessions::{Coordinator, Decision, Mechanism};
    use foundation_agents::market::double::{ClearingOutcome, ClearingReason, ClearingRule};
    use foundation_core::vars::SessionId;

    fn session(id: u64) -> Session {
        Session {
            id: SessionId(id),
            mechanism: Mechanism::Market {
                name: "hours".into(),
                rule: ClearingRule::Uniform,
            },
            capability: "trader".into(),
            answer_within: Duration::from_millis(10),
            commit: None,
            coordinator: Coordinator::Caller,
        }
    }

    #[test]
    fn a_row_whose_entry_is_dropped_unended_is_abandoned_and_an_ended_one_stays() {
        let log = SessionLog::default();
        let entry = log.opened(&session(1), 2);
        assert_eq!(log.rows()[0].state, "running");
        drop(entry);
        assert_eq!(log.rows()[0].state, "abandoned");
        log.refused(log.opened(&session(2), 1), "no quorum", Duration::ZERO);
        assert_eq!(log.rows()[1].state, "refused");
    }

    #[test]
    fn rows_go_from_running_to_ended_and_the_oldest_are_forgotten() {
        let log = SessionLog::default();
        let first = log.opened(&session(1), 3);
        assert_eq!(log.rows()[0].state, "running");
        let report = SessionReport {
            session: SessionId(1),
            participants: vec!["a".into(), "b".into(), "c".into()],
            answered: 2,
            rejected: vec![("c".into(), "late".into())],
            rounds: 1,
            decision: Decision::Market(ClearingOutcome {
                efficient_quantity: 0,
                traded_quantity: 0,
                buyer_price: None,
                seller_price: None,
                fills: vec![],
                surplus: 0.0,
                reason: ClearingReason::NoCrossing,
            }),
            commit: CommitState::NotRequested,
        };
        log.ended(
            first,
            &report,
            "0 units traded".into(),
            Duration::from_millis(12),
        );
        let row = &log.rows()[0];
        assert_eq!(
            (row.state, row.answered, row.refused),
            ("decided", Some(2), Some(1))
        );
        assert_eq!(row.duration_ms, Some(12));
        for id in 2..=(KEPT as u64 + 1) {
            log.opened(&session(id), 1);
        }
        let rows = log.rows();
        assert_eq!(rows.len(), KEPT);
        assert_eq!(rows[0].session, 2, "session 1 was the oldest");
    }

    #[test]
    fn a_running_session_stays_while_the_ended_ones_around_it_are_forgotten() {
        let log = SessionLog::default();
        let long = log.opened(&session(1), 1);
        for id in 2..=(KEPT as u64 + 10) {
            log.opened(&session(id), 1);
        }
        let rows = log.rows();
        assert_eq!(rows.len(), KEPT);
        assert_eq!((rows[0].session, rows[0].state), (1, "running"));
        assert_eq!(rows[1].session, 12, "the oldest ended ones went");
        log.refused(long, "no quorum", Duration::ZERO);
        assert_eq!(log.rows()[0].state, "refused", "its end is written");
    }

    #[test]
    fn past_the_bound_of_running_sessions_the_oldest_running_one_goes() {
        let log = SessionLog::default();
        let running: Vec<Entry> = (1..=(KEPT as u64 + 1))
            .map(|id| log.opened(&session(id), 1))
            .collect();
        let rows = log.rows();
        assert_eq!(rows.len(), KEPT);
        assert_eq!(rows[0].session, 2, "session 1 was the oldest running");
        assert!(rows.iter().all(|r| r.state == RUNNING));
        drop(running);
    }
}
