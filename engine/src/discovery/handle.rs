//! The handle of a running strategy: stopping it withdraws the advertisement.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running strategy. [`stop`](Self::stop) withdraws its advertisement (deletes the local
/// file, unregisters the mDNS service) and ends its task.
///
/// Dropping the handle also stops the strategy, but without waiting for the clean-up to finish.
#[derive(Debug)]
pub struct DiscoveryHandle {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a strategy's task watches to learn that it should stop.
#[derive(Clone, Debug)]
pub(crate) struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves when the handle asked to stop or was dropped.
    pub(crate) async fn stopped(&mut self) {
        // An error means the handle is gone, which is a request to stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl DiscoveryHandle {
    /// Spawns the strategy's task, built from the stop signal it must watch.
    pub(crate) fn spawn<F, Fut>(name: &'static str, task: F) -> Self
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, signal) = watch::channel(false);
        let task = tokio::spawn(task(StopSignal(signal)));
        Self { name, stop, task }
    }

    /// The strategy's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the strategy's task has ended (stopped, or its consumer went away).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Withdraws the advertisement and waits for the strategy's task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(strategy = self.name, %error, "discovery task ended abnormally");
        }
    }
}
