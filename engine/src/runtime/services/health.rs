//! Health checks the engine runs for a registered instance: a TCP connect, an HTTP GET, or the
//! application's own probe. The instance turns unhealthy after `fall` failures in a row and
//! healthy again after `rise` successes, so one slow answer does not flap it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handler::BoxFuture;
use foundation_core::services::Health;

/// What a check does.
#[derive(Clone)]
pub enum Probe {
    /// Passes if a TCP connection to the address opens.
    Tcp(SocketAddr),
    /// Passes if `GET path` on the address answers 2xx.
    Http {
        /// The server.
        addr: SocketAddr,
        /// The path, e.g. `/health`.
        path: String,
    },
    /// Passes if the future yields `true`.
    Custom(Arc<dyn Fn() -> BoxFuture<bool> + Send + Sync>),
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(addr) => write!(f, "Tcp({addr})"),
            Probe::Http { addr, path } => write!(f, "Http({addr}{path})"),
            Probe::Custom(_) => write!(f, "Custom"),
        }
    }
}

/// A periodic check and its thresholds.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    /// What to run.
    pub probe: Probe,
    /// Time between runs.
    pub interval: Duration,
    /// Longest a run may take; longer counts as a failure.
    pub timeout: Duration,
    /// Failures in a row that make the instance unhealthy.
    pub fall: u32,
    /// Successes in a row that make it healthy again.
    pub rise: u32,
}

impl HealthCheck {
    /// A check of `probe` every second, 1 s timeout, unhealthy after 3 failures, healthy
    /// after 2 successes.
    pub fn new(probe: Probe) -> Self {
        Self {
            probe,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
        }
    }

    /// A check that runs `probe`, an async closure answering "healthy?".
    pub fn custom<F, Fut>(probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        Self::new(Probe::Custom(Arc::new(move || Box::pin(probe()))))
    }

    /// Sets the interval.
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the thresholds.
    pub fn thresholds(mut self, fall: u32, rise: u32) -> Self {
        self.fall = fall.max(1);
        self.rise = rise.max(1);
        self
    }
}

/// Runs `check` in a task of its own, handing every change of health to `report`, until
/// `report` answers false (whoever listened is gone) or the task is aborted.
pub(crate) fn spawn_check<F, Fut>(check: HealthCheck, mut report: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut(Health) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        let mut streak = Streak::default();
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let passed = tokio::time::timeout(check.timeout, run(&check.probe))
                .await
                .unwrap_or(false);
            let Some(health) = streak.record(passed, check.fall, check.rise) else {
                continue;
            };
            if !report(health).await {
                return;
            }
        }
    })
}

/// Consecutive results, and the health they last decided.
#[derive(Debug, Default)]
struct Streak {
    passes: u32,
    failures: u32,
    unhealthy: bool,
}

impl Streak {
    /// Counts a result; returns the new health when the thresholds change it.
    fn record(&mut self, passed: bool, fall: u32, rise: u32) -> Option<Health> {
        if passed {
            self.passes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.passes = 0;
        }
        if self.unhealthy && self.passes >= rise {
            self.unhealthy = false;
            return Some(Health::Healthy);
        }
        if !self.unhealthy && self.failures >= fall {
            self.unhealthy = true;
            return Some(Health::Unhealthy);
        }
        None
    }
}

async fn run(probe: &Probe) -> bool {
    match probe {
        Probe::Tcp(addr) => TcpStream::connect(addr).await.is_ok(),
        Probe::Http { addr, path } => http_ok(*addr, path).await,
        Probe::Custom(probe) => probe().await,
    }
}

/// `GET path` answered with a 2xx status line.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).await.is_err() {
        return false;
    }
    // "HTTP/1.1 200"
    head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_changes_only_at_the_thresholds() {
        let mut streak = Streak::default();
        assert_eq!(streak.record(false, 3, 2), None);
        assert_eq!(streak.record(false, 3, 2), None);
        assert_eq!(
            streak.record(true, 3, 2),
            None,
            "a pass resets the failures"
        );
        assert_eq!(streak.record(false, 3, 2), None);
        assert_eq!(streak.record(false, 3, 2), None);
        assert_eq!(streak.record(false, 3, 2), Some(Health::Unhealthy));
        assert_eq!(streak.record(false, 3, 2), None, "already unhealthy");
        assert_eq!(streak.record(true, 3, 2), None);
        assert_eq!(streak.record(true, 3, 2), Some(Health::Healthy));
    }
}
