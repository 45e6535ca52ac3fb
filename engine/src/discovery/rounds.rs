//! The loop of the strategies that look their peers up in rounds (static seeds, DNS).

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::handle::StopSignal;
use super::report::Closed;

/// Runs `round` every `interval` until the handle asks to stop or a round finds the consumer
/// gone.
///
/// A round in progress is abandoned when stop is asked: a lookup can wait on a silent name
/// server for its timeouts and retries (seconds each), and a node that leaves waits for its
/// strategies to stop. A round that overran the interval is followed by one round, not by a
/// burst of the ticks it missed.
pub(crate) async fn every<F, Fut>(interval: Duration, mut stop: StopSignal, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Closed>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let consumer_gone = tokio::select! {
            _ = stop.stopped() => return,
            outcome = async {
                ticker.tick().await;
                round().await
            } => outcome.is_err(),
        };
        if consumer_gone {
            return;
        }
    }
}
