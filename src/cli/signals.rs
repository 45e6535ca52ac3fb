//! The signals that stop `foundation node`: SIGTERM (systemd, Kubernetes, `kill`) and SIGINT
//! (Ctrl-C). Both are listened to through one stream each, installed once for the life of the
//! process, so a signal that arrives while the node is busy (starting, printing) waits to be
//! read instead of being lost.

use std::fmt;

/// A stopping signal that was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: how service managers stop a process.
    Terminate,
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
}

impl StopSignal {
    /// The exit code of a process that stops because of this signal without finishing its
    /// work: 128 + the signal's number, as a shell reports it.
    pub fn exit_code(self) -> i32 {
        match self {
            StopSignal::Terminate => 128 + 15,
            StopSignal::Interrupt => 128 + 2,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        })
    }
}

/// The process's stopping signals, as one stream.
#[cfg(unix)]
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Starts listening; from now on neither signal ends the process by itself. Must be called
    /// inside a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal (one received since the last call, or the next to come).
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            Some(()) = self.terminate.recv() => StopSignal::Terminate,
            Some(()) = self.interrupt.recv() => StopSignal::Interrupt,
            else => std::future::pending().await,
        }
    }
}

/// The process's stopping signal (Ctrl-C only, where there are no Unix signals).
#[cfg(not(unix))]
pub struct Signals(());

#[cfg(not(unix))]
impl Signals {
    /// Starts listening.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self(()))
    }

    /// The next Ctrl-C.
    pub async fn recv(&mut self) -> StopSignal {
        match tokio::signal::ctrl_c().await {
            Ok(()) => StopSignal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}
