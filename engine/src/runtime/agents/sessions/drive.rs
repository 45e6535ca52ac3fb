//! The tokio carrier of a session's driver (`foundation_core::agents::sessions::SessionDriver`,
//! which holds every rule: rounds, asks, answer validation, deadlines, the decision). This
//! loop only moves what the driver asks for: each [`AskOut`] becomes one agent request (a
//! [`SessionMessage::Invite`]) whose answer or silence is handed back with the milliseconds
//! since the session opened; the driver's deadline is a tokio sleep.

use std::time::Duration;

use foundation_core::agents::sessions::{open, AskOut, Drove, Heard, SessionDriver};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{millis, Session, SessionError, SessionMessage};
use crate::runtime::agents::{AgentsHandle, DeliveryError};
use crate::runtime::wait::bounded;

/// What came back for one ask: its id and what was heard.
type Reply = (u64, Heard);

/// Drives `session`'s mechanism over participants `names` (agent `i` is `names[i]`) until it
/// decided and every ask's answer (or silence) is heard.
pub(super) async fn drive(
    handle: &AgentsHandle,
    session: &Session,
    names: &[String],
) -> Result<Drove, SessionError> {
    let within = millis(session.answer_within);
    let mut driver =
        open(session.id, &session.mechanism, names, within).map_err(SessionError::Config)?;
    let opened = Instant::now();
    let (sender, mut replies) = mpsc::unbounded_channel::<Reply>();
    let mut asks = JoinSet::new();
    loop {
        send_asks(handle, session, names, &mut driver, &sender, &mut asks);
        if driver.finished() {
            break;
        }
        let wake = driver.poll_timeout();
        let sleep = async {
            match wake {
                Some(ms) => {
                    tokio::time::sleep_until(opened + bounded(Duration::from_millis(ms))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((id, heard)) = replies.recv() => {
                driver.hear(millis(opened.elapsed()), id, heard);
            }
            () = sleep => driver.handle_timeout(millis(opened.elapsed())),
        }
    }
    driver
        .drove()
        .ok_or_else(|| SessionError::Config("the session ended undecided".into()))
}

/// Sends each ask the driver has as a request to its participant, all at once; the replies
/// come back on `sender`.
fn send_asks(
    handle: &AgentsHandle,
    session: &Session,
    names: &[String],
    driver: &mut SessionDriver,
    sender: &mpsc::UnboundedSender<Reply>,
    asks: &mut JoinSet<()>,
) {
    let batch = driver.take_asks();
    if batch.is_empty() {
        return;
    }
    let commit = session.commit.as_ref();
    for AskOut {
        id,
        agent,
        ask,
        within_ms,
        wait_ms,
    } in batch
    {
        let Some(name) = names.get(agent).cloned() else {
            continue; // The driver only addresses participants.
        };
        let message = SessionMessage::Invite {
            session: session.id,
            ask,
            within_ms,
            ledger: commit.map(|c| c.ledger.clone()),
            commit_ms: commit.map_or(0, |c| millis(c.timeout)),
        };
        let (handle, sender) = (handle.clone(), sender.clone());
        asks.spawn(async move {
            let wait = Duration::from_millis(wait_ms);
            let heard = match handle.request(&name, &message, wait).await {
                Ok(answer) => Heard::Answer(answer),
                Err(DeliveryError::Codec(why)) => Heard::Malformed(why),
                Err(_) => Heard::Silent,
            };
            let _ = sender.send((id, heard)); // The session ended: nobody listens any more.
        });
    }
    let what = format!(
        "round {}: asked {} participants",
        driver.rounds(),
        driver.in_flight()
    );
    handle.session_event(session, what);
}
